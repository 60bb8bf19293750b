"""eval.json goes through runs/eval_file.py: written in one rename, so a failed write keeps the last one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.runs.eval_file import read_eval, write_eval


def test_eval_json_round_trips_as_indented_json(tmp_path: Path) -> None:
    record = {"target": {"name": "run"}, "results": {"mmlu": {"acc": 0.5}}}
    path = write_eval(tmp_path / "out", record)
    assert path == tmp_path / "out" / "eval.json"
    assert path.read_text() == json.dumps(record, indent=2)
    assert read_eval(tmp_path / "out") == record
    assert read_eval(tmp_path / "missing") is None


def test_a_write_that_fails_midway_leaves_the_previous_eval_json_whole(tmp_path: Path) -> None:
    good = {"results": {"mmlu": {"acc": 0.5}}, "deltas": []}
    write_eval(tmp_path, good)
    # The encoder has already written "results" when it meets a value JSON cannot hold.
    with pytest.raises(TypeError):
        write_eval(tmp_path, {"results": {"mmlu": {"acc": 0.75}}, "seconds": object()})
    assert read_eval(tmp_path) == good
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]  # no temporary file left behind
