"""Read data rows from local files or a hub dataset; every row remembers where it came from.

A bad row is reported as `file:line: what is wrong`, so the user can open the file at that line. Locations:
  * JSON Lines (and a `.json` file holding one object per line): the physical 1-based line;
  * CSV: the physical line where the record starts (the header is line 1; a quoted cell may span lines);
  * `.txt`: the physical line;
  * a JSON array, parquet, a hub dataset: `row N` (1-based), as those have no useful line.

Parquet files and hub datasets are read by `datasets`. JSON, JSON Lines and CSV are parsed here with the
standard library instead, because `datasets` (5.2, through pyarrow and pandas) changes their values: it
turns date-like strings into datetimes, `"1"` into `1` and `"true"` into `True` when a column mixes types,
CSV cells `NA`/`None` into missing and `007` into `7.0`; and its errors name no line. Training text must
arrive as written, and the parse that finds a bad line is the one that reads the rows. CSV cells are all
text (CSV has no types); an empty cell is the empty string.

`.txt` files hold raw text for continued pre-training. Each non-empty line is one row `{"text": line}`.
Neither TinyStories file marks story boundaries in a way a splitter could trust (one ends stories with
a single newline and separates paragraphs with a blank line; the other uses blank lines for both), and
CPT concatenates rows with EOS between them anyway, so a row per line (a paragraph) loses nothing that
matters and keeps `file:line` exact.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError, UserError

SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".parquet", ".txt")
_PATH_PREFIXES = ("/", "./", "../", "~")
_CSV_FIELD_LIMIT = 2**31 - 1  # the csv module's default (128 KiB a cell) rejects long documents


@dataclass(frozen=True)
class Row:
    """One data row and where it came from (`data/train.jsonl:17`, `data/x.parquet:row 3`)."""

    data: dict[str, Any]
    where: str
    bad: str | None = None
    """Why the line could not be read as a row (invalid JSON...), when `on_bad_row="skip"` kept it as a bad row."""
    folder: Path | None = None
    """The folder of the file the row came from (None for a hub dataset): a row's relative image paths
    resolve against it, so a dataset reads the same from any working directory."""


def load_rows(sources: str | Path | Sequence[str | Path], split: str = "train", on_bad_row: str = "error") -> list[Row]:
    """Rows of every source, in order.

    A JSON Lines line that is not a JSON object raises `DataError("file:line: ...")`, or with
    `on_bad_row="skip"` comes back as a `Row` whose `bad` says why, so `parse_rows` counts and lists it
    with the other bad rows instead of one truncated line stopping a large file. A source is a file, a folder (every supported file directly inside it, sorted by name), a glob
    or an fsspec URL (`s3://...`, `memory://...`: read as shards, data/shards.py), or a hub dataset id (any string that is not an existing path and does not look like one), loaded with
    `datasets.load_dataset(id, split=split)`; `split` applies to hub ids only.
    """
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not items:
        raise UserError("no data sources given: name a file, a folder or a hub dataset id")
    rows: list[Row] = []
    for item in items:
        rows += _load_source(item, split, on_bad_row == "skip")
    return rows


def text_files(sources: str | Path | Sequence[str | Path]) -> list[Path] | None:
    """Every file of the sources when each is a `.txt` file (or a folder of only `.txt` files), else None."""
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUPPORTED_SUFFIXES) if path.is_dir() else [path]
        if not found or any(file.suffix != ".txt" or not file.is_file() for file in found):
            return None
        files += found
    return files


def text_lines(sources: str | Path | Sequence[str | Path]) -> list[str] | None:
    """The non-blank lines of every source when every source is raw text (`text_files`), else None. Raw text
    needs no Row per line: a `.txt` line is always a valid text row, and a corpus of gigabytes is millions
    of lines, each of which would otherwise carry a dict and a `file:line` string."""
    files = text_files(sources)
    if files is None:
        return None
    lines: list[str] = []
    for file in files:
        found = _text_file_lines(file)
        if not found:
            raise UserError(f"{file}: the file is empty")
        lines += found
    return lines


def _text_file_lines(path: Path) -> list[str]:
    return list(iter_text_lines(path))


def iter_text_lines(path: Path) -> Iterator[str]:
    """The non-blank lines of a `.txt` file, one at a time: the file is never one string in memory.
    Newlines are read as `Path.read_text` reads them; a byte that is not UTF-8 is reported as `read_text` does."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            yield from (line.removesuffix("\n") for line in handle if line.strip())
    except UnicodeDecodeError:
        read_text(path)  # raises the error with the offset in the file
        raise


def _load_source(source: str | Path, split: str, skip: bool) -> list[Row]:
    if isinstance(source, str) and ("://" in source or any(sign in source for sign in "*?[")):
        from tunesmith.data.shards import expand_shards, read_rows  # an fsspec URL or a glob: read as shards

        return [row for shard in expand_shards(source) for row, _ in read_rows(shard, skip_bad=skip)]
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUPPORTED_SUFFIXES)
        if not files:
            raise UserError(f"{path}: the folder holds no data files ({', '.join(SUPPORTED_SUFFIXES)})")
        return [row for file in files for row in _load_file(file, skip)]
    if path.is_file():
        return _load_file(path, skip)
    if isinstance(source, Path) or source.startswith(_PATH_PREFIXES) or source.endswith(SUPPORTED_SUFFIXES):
        raise UserError(f"data file not found: {source}")
    return _load_hub(source, split)


def _load_file(path: Path, skip: bool = False) -> list[Row]:
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise UserError(
            f"{path}: unsupported file type '{path.suffix}'; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if path.suffix == ".parquet":
        rows = _numbered(str(path), _read_parquet(path), path.parent.absolute())
    else:
        text = read_text(path)
        if not text.strip():
            raise UserError(f"{path}: the file is empty")
        if path.suffix == ".txt":
            rows = [Row({"text": line}, f"{path}:{n}") for n, line in _lines(text)]
        elif path.suffix == ".csv":
            rows = _read_csv(path, text)
        else:
            rows = _read_json(path, text, skip)
    if not rows:
        raise UserError(f"{path}: the file holds no rows")
    return rows


def read_text(path: Path) -> str:
    try:
        # -sig drops the byte-order mark some editors write; newlines are read as "\n" whatever the OS
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {e.start}); re-save it as UTF-8") from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every line that is not blank."""
    return ((n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip())


def _read_json(path: Path, text: str, skip: bool = False) -> list[Row]:
    if not text.lstrip().startswith("["):
        folder = path.parent.absolute()
        return [_json_line(path, n, line, skip, folder) for n, line in _lines(text)]
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise DataError(f"{path}:1: the JSON is nested too deeply to be data rows") from None
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise DataError(f"{path}:row {n}: expected a JSON object, got {type(item).__name__}")
        _check_encodable(item, f"{path}:row {n}")
    return _numbered(str(path), items, path.parent.absolute())


SKIP_HINT = "; fix the line, or set data.on_bad_row: skip to leave bad lines out (the report lists them)"
"""Appended to a line that cannot be read, so the error says how to go on past it."""


def _json_line(path: Path, n: int, line: str, skip: bool, folder: Path | None = None) -> Row:
    """Line `n` as a row; a line that is not a JSON object raises, or under skip is a row marked bad."""
    try:
        return Row(_json_object(path, n, line), f"{path}:{n}", folder=folder)
    except DataError as e:
        if not skip:
            raise DataError(f"{e}{SKIP_HINT}") from None
        return Row({}, f"{path}:{n}", bad=str(e))


def _json_object(path: Path, n: int, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        reason = f"{e.msg} (column {e.colno})"
        raise DataError(f"{path}:{n}: invalid JSON: {reason}; JSON Lines hold one object per line") from None
    except RecursionError:
        raise DataError(f"{path}:{n}: the JSON is nested too deeply to be a data row") from None
    if not isinstance(item, dict):
        raise DataError(f"{path}:{n}: expected one JSON object per line, got {type(item).__name__}")
    _check_encodable(item, f"{path}:{n}")
    return item


def _check_encodable(item: dict[str, Any], where: str) -> None:
    """JSON may escape half of a UTF-16 surrogate pair (`\\ud800`); such a string cannot become UTF-8, so the
    tokenizer and the data cache would fail on it far from the line that holds it."""
    try:
        json.dumps(item, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        bad = e.object[e.start:e.end].encode("unicode_escape").decode()
        raise DataError(f"{where}: a string holds an unpaired surrogate escape ({bad}), which is not text; "
                        "fix or drop that escape") from None
    except RecursionError:
        raise DataError(f"{where}: the JSON is nested too deeply to be a data row") from None


def _read_csv(path: Path, text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    old_limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        header = next(reader)
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise DataError(f"{path}:1: duplicate column names {duplicates}; give every column its own name")
        rows, folder = [], path.parent.absolute()
        end = reader.line_num
        for record in reader:
            start, end = end + 1, reader.line_num
            if not record:  # a blank line
                continue
            if len(record) != len(header):
                raise DataError(f"{path}:{start}: {len(record)} cells, but the header has {len(header)} columns")
            rows.append(Row(dict(zip(header, record)), f"{path}:{start}", folder=folder))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: invalid CSV: {e}") from None
    finally:
        csv.field_size_limit(old_limit)
    return rows


def _numbered(label: str, items: list[dict[str, Any]], folder: Path | None = None) -> list[Row]:
    return [Row(data, f"{label}:row {n}", folder=folder) for n, data in enumerate(items, 1)]


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    """All rows as dicts. The Arrow cache goes to a temporary folder: the rows are copied out at once, so
    a persistent cache would only fill the disk, and could go stale when the file is rewritten."""
    import datasets  # `datasets` (and Arrow, pandas) only when a file needs it: ~100 MiB of resident memory
    from datasets.exceptions import DatasetGenerationError

    try:
        with _quiet(), tempfile.TemporaryDirectory(prefix="tunesmith-data-") as cache:
            dataset = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=cache)
            return dataset.to_list()
    except (DatasetGenerationError, OSError, ValueError) as e:
        raise UserError(f"{path}: could not be read as parquet: {e.__cause__ or e}") from None


def _load_hub(name: str, split: str) -> list[Row]:
    import datasets

    try:
        with _quiet():
            dataset = datasets.load_dataset(name, split=split)
    except (OSError, ValueError) as e:  # not found, offline, unknown split (datasets raises these kinds)
        raise UserError(
            f"'{name}' is not a local file or folder, and loading it as a hub dataset (split '{split}') "
            f"failed: {e}"
        ) from None
    return _numbered(f"{name}[{split}]", dataset.to_list())


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence `datasets` progress bars and logs while it reads; our own errors say what went wrong."""
    import datasets

    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()
