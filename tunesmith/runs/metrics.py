"""metrics.jsonl: the run's training and evaluation records, one JSON object per line.

Each record has an integer "step"; a train record carries "loss", an eval record "eval_loss", and either
may carry more (lr, grad_norm, tokens_per_s...). Lines are flushed as they are written, so the file is
readable while the run goes on (the web UI and `report` read it live) and survives a crash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError, UserError
from tunesmith.runs.atomic import write_text_atomic

METRICS_FILE = "metrics.jsonl"
TRAIN_KEY = "loss"
EVAL_KEY = "eval_loss"


class MetricsLog:
    """Append-only `run_dir/metrics.jsonl` plus the records in memory (earlier ones reloaded on resume).

    With `write=False` (the other ranks of a multi-process run) the records are kept in memory only, so every
    rank takes the same decisions from them (early stopping) while the main process alone writes the file.
    """

    def __init__(self, run_dir: Path, write: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.write = write
        self.records: list[dict[str, Any]] = []
        if self.path.exists():
            self.records = read_metrics(self.path)
            if write and not self.path.read_bytes().endswith(b"\n"):
                self._rewrite()  # a crash mid-line left a fragment that the next append would corrupt

    def log(self, record: dict[str, Any]) -> None:
        """Append one record; it must have an integer "step"."""
        if not isinstance(record.get("step"), int):
            raise ValueError(f"a metrics record needs an integer 'step', got {record!r}")
        self.records.append(dict(record))
        if not self.write:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step`: after resuming from a checkpoint at `step` they describe lost work."""
        self.records = [r for r in self.records if r["step"] <= step]
        if self.write:
            self._rewrite()

    @property
    def trains(self) -> list[tuple[int, float]]:
        """(step, train loss) in logging order."""
        return series(self.records, TRAIN_KEY)

    @property
    def evals(self) -> list[tuple[int, float]]:
        """(step, eval loss) in logging order."""
        return series(self.records, EVAL_KEY)

    def _rewrite(self) -> None:
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.records))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; an unfinished last line (the run was killed mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no metrics file at {path}; point to a run folder that has trained at least one step")
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
            raise DataError(f"{path}:{number}: not a metrics record (a JSON object with an integer step)")
        records.append(record)
    return records


def series(records: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) of every record holding `key`, in logging order."""
    return [(r["step"], float(r[key])) for r in records if key in r]
