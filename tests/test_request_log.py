"""The serve request log rotates by size (serve/requestlog.py): a server running for weeks keeps a bounded log,
the newest lines in the current file, and no line is lost or split across a rotation."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.serve.requestlog import RequestLog


def _lines(path: Path) -> list[dict[str, int]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_log_rotates_past_its_size_and_keeps_only_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path, max_bytes=300, backups=2)
    for i in range(100):
        log.write({"request": i, "status": 200})
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"]
    line_bytes = len(json.dumps({"request": 99, "status": 200})) + 1
    assert all(f.stat().st_size < 300 + line_bytes for f in files), [f.stat().st_size for f in files]
    kept = [r["request"] for f in (files[2], files[1], files[0]) for r in _lines(f)]
    assert kept == list(range(kept[0], 100)), "the kept lines are the newest, in order, none lost between files"
    assert 0 < kept[0] < 90


def test_a_log_below_its_size_is_one_file(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path)
    for i in range(50):
        log.write({"request": i})
    log.close()
    assert [f.name for f in tmp_path.iterdir()] == ["requests.jsonl"]
    assert [r["request"] for r in _lines(path)] == list(range(50))
