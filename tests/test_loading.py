"""Loading rows from files and folders, each row knowing its `file:line`."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesmith.data.loading import Row, load_rows
from tunesmith.errors import DataError, UserError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_rows_carry_their_physical_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", '{"a": "x"}\n\n   \n{"a": "y"}\r\n{"a": "z"}\n')
    rows = load_rows(path)
    folder = path.parent.absolute()  # where a row's relative picture paths resolve
    assert rows == [Row({"a": "x"}, f"{path}:1", folder=folder), Row({"a": "y"}, f"{path}:4", folder=folder),
                    Row({"a": "z"}, f"{path}:5", folder=folder)]


def test_json_values_arrive_as_written(tmp_path: Path) -> None:
    # datasets/pyarrow would make the date a datetime and, in a mixed column, "1" a number.
    rows = [{"output": "1"}, {"output": 5}, {"output": "2020-01-01"}, {"output": "true", "n": 2**70}]
    path = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(row) for row in rows))
    assert [row.data for row in load_rows(path)] == rows


def test_invalid_json_line_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", '{"a": "x"}\n{"a": "y"}\n\n{"a": "z"\n{"a": "w"}\n')
    with pytest.raises(DataError, match=f"^{path}:4: invalid JSON: Expecting ',' delimiter"):
        load_rows(path)


def test_non_object_json_line_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", '{"a": "x"}\n[1, 2]\n')
    with pytest.raises(DataError, match=f"^{path}:2: expected one JSON object per line, got list"):
        load_rows(path)


def test_json_array_rows_are_numbered(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.json", json.dumps([{"a": "x"}, {"a": "y"}], indent=2))
    folder = path.parent.absolute()
    assert load_rows(path) == [Row({"a": "x"}, f"{path}:row 1", folder=folder), Row({"a": "y"}, f"{path}:row 2", folder=folder)]


def test_invalid_json_array_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.json", '[\n  {"a": "x"},\n  {"a": "y" "b": 1}\n]\n')
    with pytest.raises(DataError, match=f"^{path}:3: invalid JSON"):
        load_rows(path)


def test_json_file_holding_json_lines_uses_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.json", '{"a": "x"}\n\n{"a": "y"}\n')
    assert [row.where for row in load_rows(path)] == [f"{path}:1", f"{path}:3"]


def test_csv_rows_start_on_their_physical_line_and_stay_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", 'instruction,output\n"two\nlines",007\n\nNA,\n')
    assert load_rows(path) == [
        Row({"instruction": "two\nlines", "output": "007"}, f"{path}:2", folder=path.parent.absolute()),
        Row({"instruction": "NA", "output": ""}, f"{path}:5", folder=path.parent.absolute()),
    ]


def test_csv_row_with_the_wrong_number_of_cells_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "a,b\n1,2\n3\n")
    with pytest.raises(DataError, match=f"^{path}:3: 1 cells, but the header has 2 columns$"):
        load_rows(path)


def test_csv_cells_may_be_longer_than_the_csv_module_default(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "text\n" + "x" * 200_000 + "\n")
    assert len(load_rows(path)[0].data["text"]) == 200_000


def test_csv_duplicate_header_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.csv", "a,a\n1,2\n")
    with pytest.raises(DataError, match=r":1: duplicate column names \['a'\]"):
        load_rows(path)


def test_parquet_rows_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["one", "two"], "n": [1, 2]}), path)
    folder = path.parent.absolute()
    expected = [Row({"text": "one", "n": 1}, f"{path}:row 1", folder=folder), Row({"text": "two", "n": 2}, f"{path}:row 2", folder=folder)]
    assert load_rows(path) == expected


def test_txt_gives_one_row_per_nonempty_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.txt", "First story.\n\nSecond paragraph.\r\n  \nThird.")
    assert load_rows(path) == [
        Row({"text": "First story."}, f"{path}:1"),
        Row({"text": "Second paragraph."}, f"{path}:3"),
        Row({"text": "Third."}, f"{path}:5"),
    ]


def test_folder_loads_every_supported_file_in_name_order(tmp_path: Path) -> None:
    _write(tmp_path / "b.csv", "text\nfrom csv\n")
    _write(tmp_path / "a.jsonl", '{"text": "from jsonl"}\n')
    _write(tmp_path / "notes.md", "not data")
    rows = load_rows(tmp_path)
    assert [(row.data["text"], row.where) for row in rows] == [
        ("from jsonl", f"{tmp_path / 'a.jsonl'}:1"),
        ("from csv", f"{tmp_path / 'b.csv'}:2"),
    ]


def test_list_of_sources_is_concatenated_in_order(tmp_path: Path) -> None:
    first = _write(tmp_path / "1.txt", "one\n")
    second = _write(tmp_path / "2.jsonl", '{"text": "two"}\n')
    assert [row.data["text"] for row in load_rows([str(second), first])] == ["two", "one"]


@pytest.mark.parametrize("name", ["missing.jsonl", "./missing", "data/missing.csv"])
def test_missing_file_is_named(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match=f"data file not found: {name}"):
        load_rows(name)


def test_unsupported_extension_lists_supported(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.xlsx", "x")
    with pytest.raises(UserError, match=r"unsupported file type '\.xlsx'; supported: \.jsonl, \.json"):
        load_rows(path)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "empty.txt"])
def test_empty_file_is_an_error(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, "\n \n")
    with pytest.raises(UserError, match=f"{path}: the file is empty"):
        load_rows(path)


def test_folder_without_data_files_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "README.md", "nothing")
    with pytest.raises(UserError, match="holds no data files"):
        load_rows(tmp_path)


def test_no_sources_is_an_error() -> None:
    with pytest.raises(UserError, match="no data sources"):
        load_rows([])


def test_unknown_hub_id_offline_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match=r"'nobody/no-such-dataset' is not a local file or folder, and loading"):
        load_rows("nobody/no-such-dataset")


def test_loading_leaves_progress_bars_as_they_were(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.jsonl", '{"a": 1}\n')
    before = datasets.utils.are_progress_bars_disabled()
    load_rows(path)
    assert datasets.utils.are_progress_bars_disabled() == before


def test_real_text_files_give_one_row_per_paragraph(shared_data: Path) -> None:
    path = shared_data / "tinystories_train_first1000.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = load_rows(path)
    assert len(rows) == sum(1 for line in lines if line.strip())
    assert rows[0].where == f"{path}:1" and rows[1].where == f"{path}:3"
    assert rows[1].data["text"] == lines[2]
