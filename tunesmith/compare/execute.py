"""Train one strategy in a child process (its own peak memory and wall time), then evaluate it.

Peak memory is the child's peak resident set (`os.wait4`'s ru_maxrss: that process alone, not the largest of
all children); on CPU that is the training's whole memory. The child is `python -m tunesmith train`, the
same command a user runs, so a comparison measures exactly what training costs. An unfinished run with a
checkpoint resumes (`--resume`); one without starts over (`--overwrite`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunesmith.compare.run_files import read_run
from tunesmith.errors import UserError
from tunesmith.recipe.user_code import OPTION
from tunesmith.runs.atomic import write_text_atomic
from tunesmith.runs.record import read_json

MEASURE_FILE = "measure.json"


def train_child(recipe_file: Path, run_dir: Path, log: Path, rewards_files: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Run `tunesmith train` on `recipe_file` in a fresh process, given the comparison's --rewards-file files;
    returns wall seconds and peak RSS."""
    started = read_run(run_dir) is not None and any((run_dir / "checkpoints").glob("step-*"))
    flag = "--resume" if started else "--overwrite"
    command = [sys.executable, "-m", "tunesmith", "train", str(recipe_file), flag]
    command += [arg for path in rewards_files for arg in (OPTION, str(path))]
    begin = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise UserError(f"training {recipe_file.stem} failed (exit {child.returncode}); see {log}:\n{tail}")
    return {"wall_seconds": round(time.perf_counter() - begin, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "resumed": started}


def save_measure(folder: Path, name: str, measure: dict[str, Any]) -> None:
    path = folder / "measures" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(measure, indent=2))


def load_measure(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / "measures" / f"{name}.json"
    return read_json(path)
