"""A line that is not JSON stops a run unless `data.on_bad_row: skip`, which counts it and names its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.data.formats import parse_rows
from tunesmith.data.loading import load_rows
from tunesmith.data.pipeline import prepare_data
from tunesmith.errors import DataError
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.tiny import tiny_tokenizer


def _broken_copy(shared_data: Path, tmp_path: Path) -> Path:
    """The real Alpaca sample with line 3 cut mid-object (a truncated write) and line 6 not an object."""
    lines = (shared_data / "alpaca_1k.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    lines[2] = lines[2][: len(lines[2]) // 2]
    lines[5] = "[1, 2]"
    path = tmp_path / "alpaca_broken.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_without_skip_the_first_bad_line_stops_and_names_the_way_on(shared_data: Path, tmp_path: Path) -> None:
    path = _broken_copy(shared_data, tmp_path)
    with pytest.raises(DataError, match=f"^{path}:3: invalid JSON: .*data.on_bad_row: skip"):
        load_rows(path)


def test_skip_counts_and_lists_unreadable_lines_by_number(shared_data: Path, tmp_path: Path) -> None:
    path = _broken_copy(shared_data, tmp_path)
    parsed = parse_rows(load_rows(path, on_bad_row="skip"), "auto", on_bad_row="skip")
    assert parsed.format == "alpaca"
    assert len(parsed.examples) == 38
    assert [bad.split(": ")[0] for bad in parsed.bad_rows] == [f"{path}:3", f"{path}:6"]
    assert "invalid JSON" in parsed.bad_rows[0] and "expected one JSON object" in parsed.bad_rows[1]


def test_skip_through_prepare_data_reports_the_lines(shared_data: Path, tmp_path: Path) -> None:
    path = _broken_copy(shared_data, tmp_path)
    recipe = recipe_from_dict({"name": "t", "model": "unused", "train": {"max_seq_len": 64},
                               "data": {"train": str(path), "template": "plain", "on_bad_row": "skip"}})
    data = prepare_data(recipe, tiny_tokenizer())
    assert data.rows == 38 and data.summary()["bad_rows"] == 2
    assert data.bad_rows[0].startswith(f"{path}:3: invalid JSON")


def test_a_file_of_only_unreadable_lines_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"all 2 rows are unreadable; first: {path}:1: invalid JSON"):
        parse_rows(load_rows(path, on_bad_row="skip"), "auto", on_bad_row="skip")
