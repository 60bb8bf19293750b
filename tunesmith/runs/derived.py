"""Run folders made from other runs instead of by training (`tunesmith merge A B --method ties`).

Such a folder is an ordinary finished run (run.json with status `done`, and `adapter/` or `model/`), so
`eval`, `serve`, `export`, `merge` and `compare` take it like any run; its run.json adds `merge`: the
parents (name, folder, the SHA-256 of their weights), the method and its settings. It is written like a
training run's folder: locked while it is made, built beside its name and renamed into place, and it never
replaces anything but a tunesmith run folder (and that only with --overwrite), nor one of its own parents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.runs.atomic import build_folder
from tunesmith.runs.folder import versions
from tunesmith.runs.lock import acquire_lock
from tunesmith.runs.record import RUN_FILE, RunRecord, is_run_folder


def check_new_folder(out: Path, parents: list[RunRecord], overwrite: bool) -> None:
    """Refuse `out` before any work is done: a parent (or a folder inside or around one), a folder holding
    files that is not a tunesmith run, or a run folder without --overwrite."""
    where = out.resolve()
    for parent in parents:
        home = parent.path.resolve()
        if where == home or where.is_relative_to(home) or home.is_relative_to(where):
            raise UserError(f"--out {out} is, holds or lies inside the run {parent.path} being merged; the merge "
                            "would overwrite its own input: choose another --out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not is_run_folder(out):
        raise UserError(f"{out} exists and holds files but no {RUN_FILE}, so it is not a tunesmith run folder; "
                        "tunesmith will not write into it or delete it (not even with --overwrite): choose another --out")
    if not overwrite:
        raise UserError(f"{out} already holds a run; pass --overwrite to replace it, or choose another --out")


def parent_entry(run: RunRecord) -> dict[str, Any]:
    """What a derived run records of one parent: enough to find it again and to tell whether it changed since."""
    return {"name": run.name, "path": str(run.path.resolve()), "adapter": run.adapter,
            "weights_sha256": weights_digest(run.weights_dir)}


def weights_digest(folder: Path) -> str:
    """SHA-256 over the folder's safetensors files (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_derived_run(out: Path, record: RunRecord, fill: Callable[[Path], object], overwrite: bool) -> Path:
    """Build the run folder `out`: `fill(folder)` writes the weights folder `record.output` into it, then
    run.json (status done) is added, and the whole folder replaces `out` in one rename, under `out`'s lock."""
    lock = acquire_lock(out)
    try:
        check_new_folder(out, [], overwrite)  # again, under the lock: another process may have written there

        def build(tmp: Path) -> None:
            fill(tmp / record.output)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            raw = {**record.to_json(), "status": "done", "versions": versions(), "started": now, "ended": now}
            (tmp / RUN_FILE).write_text(json.dumps(raw, indent=2, default=str))

        return build_folder(out, build)
    finally:
        lock.release()
