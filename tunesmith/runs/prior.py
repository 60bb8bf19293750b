"""What a new `tunesmith train` does with whatever already sits at `output/<name>`.

Called with the run folder's lock held (lock.py), so no live process is writing there:
- nothing, or an empty folder: start;
- a folder without run.json: not a tunesmith run, never deleted, not even with --overwrite;
- a run whose run.json still says `running`: its process died without recording why (kill -9, out of
  memory, power cut), so it is marked `killed` here, with the holder the lock file named;
- any other run: --resume continues it (from its newest checkpoint, or from step 0 when it has none),
  --overwrite replaces it (later, once the new recipe, model and data have loaded), else a UserError
  saying which of the two applies.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from tunesmith.errors import UserError
from tunesmith.runs.atomic import write_text_atomic
from tunesmith.runs.lock import RunLock
from tunesmith.runs.record import RUN_FILE, is_run_folder, read_json, read_run


def check_existing(path: Path, *, resume: bool, overwrite: bool, lock: RunLock) -> bool:
    """Whether the old run at `path` is to be replaced; a UserError when the start must not go on."""
    if not path.is_dir() or not any(p for p in path.iterdir() if not p.name.startswith(".tmp-")):
        return False
    if not is_run_folder(path):
        raise UserError(
            f"{path} exists and holds files but no {RUN_FILE}, so it is not a tunesmith run folder; tunesmith "
            "will not write into it or delete it (not even with --overwrite): choose another name= or output="
        )
    record = read_run(path)
    if (read_json(path / RUN_FILE) or {}).get("status") == "running":  # we hold the lock: its writer has died
        who = f" ({lock.previous.describe()})" if lock.previous else ""
        reason = (f"the training process{who} ended without recording why: killed (kill -9, out of memory) "
                  "or the machine stopped")
        mark_status(path, "killed", reason)
        record = read_run(path)
    if resume or overwrite:
        return overwrite and not resume
    raise UserError(_how_to_go_on(record.path, record.status, record.reason))


def mark_status(path: Path, status: str, reason: str) -> None:
    """Rewrite only the status, reason and end time of the run.json at `path` (atomically)."""
    raw = read_json(path / RUN_FILE) or {}
    raw.update(status=status, reason=reason, ended=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_text_atomic(path / RUN_FILE, json.dumps(raw, indent=2, default=str))


def _how_to_go_on(path: Path, status: str, reason: str | None) -> str:
    from tunesmith.train.checkpoint import latest_checkpoint

    if status == "done":
        return (f"run folder {path} already holds a finished run; pass --overwrite to replace it, or choose "
                "another name (name=...)")
    why = f": {reason}" if reason else ""
    last = latest_checkpoint(path)
    if last is not None:
        resume = f"--resume to continue it from {last.name}"
    else:
        resume = "--resume to start it over from step 0 (it stopped before its first checkpoint, nothing is lost)"
    return (f"run folder {path} already holds a run that stopped with status '{status}'{why}. Pass {resume}, "
            "--overwrite to replace it, or choose another name (name=...)")
