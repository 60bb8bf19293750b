"""eval.json, what `tunesmith eval` leaves in its output folder: its one writer and its one reader.

The file is replaced in one rename (atomic.py), so an evaluation that dies while writing (a value JSON cannot
encode, a full disk, a kill) leaves the previous eval.json whole: the comparison skips a strategy whose
eval.json exists, and the report and dashboard read it, so half a file would break all three.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.runs.atomic import atomic_file
from tunesmith.runs.record import EVAL_FILE, read_json


def write_eval(folder: str | Path, record: dict[str, Any]) -> Path:
    """Replace `folder/eval.json` with `record` (indented JSON); the path written."""
    path = Path(folder) / EVAL_FILE
    with atomic_file(path) as handle:
        json.dump(record, handle, indent=2)
    return path


def read_eval(folder: str | Path) -> dict[str, Any] | None:
    """`folder/eval.json`, or None before any eval; a UserError when the file is damaged."""
    return read_json(Path(folder) / EVAL_FILE)
