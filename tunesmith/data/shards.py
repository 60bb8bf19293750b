"""Data sources as shards, and a shard's rows read from any point, one at a time.

A source is a local file, a folder (the supported files directly inside it, sorted by name, as
`data/loading.py` reads a folder), a glob (`data/part-*.jsonl`), or
an fsspec URL of any of these (`s3://bucket/corpus/`, `gs://...`, `hf://datasets/...`, `memory://...`):
whatever filesystem fsspec has registered for the protocol reads it, so an object store is read in place,
never copied whole. `expand_shards` lists the shards once, in a fixed order.

`read_rows(shard, cursor)` yields each row with the cursor just after it. JSON Lines (and a `.json` file of
one object per line) and `.txt` are read line by line from a byte offset, so a shard of any size costs one
line of memory and a resumed stream seeks straight to where it stopped; the cursor is (byte offset, line
number), and errors name `shard:line`. Parquet is read a record batch at a time. A JSON array or a CSV file
has no row boundary a reader can seek to: such a shard is read whole (keep those shards small); its cursor
counts rows. Rows are parsed by the same functions as `data/loading.py`, so a bad line reads the same.
"""

from __future__ import annotations

import glob as globbing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from tunesmith.data.loading import SUPPORTED_SUFFIXES, Row, _json_line, _read_csv, _read_json
from tunesmith.errors import UserError

Cursor = tuple[int, int]
"""(byte offset, line number) for line-based shards; (rows read, rows read) for the others."""
START: Cursor = (0, 0)
_GLOB = ("*", "?", "[")
_PARQUET_BATCH = 1024


@dataclass(frozen=True)
class Shard:
    """One file of a source: `name` is how errors and run.json name it (a local path, or the URL)."""

    name: str
    path: str
    fs: Any

    @property
    def suffix(self) -> str:
        return Path(self.path).suffix


def is_url(source: str) -> bool:
    return "://" in source


def expand_shards(sources: str | Sequence[str]) -> list[Shard]:
    """Every shard of the sources, in order: each source's files sorted by name; a missing one is an error."""
    items = [sources] if isinstance(sources, str) else list(sources)
    if not items:
        raise UserError("data.train: no data sources given: name a file, folder, glob or URL")
    shards: list[Shard] = []
    for item in items:
        shards += _expand(str(item))
    return shards


def _expand(source: str) -> list[Shard]:
    fs, path = fsspec.core.url_to_fs(source if is_url(source) else str(Path(source).expanduser()))
    url = is_url(source)
    if any(sign in path for sign in _GLOB):
        found = sorted(globbing.glob(path) if not url else fs.glob(path))
    elif fs.isdir(path):
        found = sorted(p for p in fs.ls(path, detail=False) if fs.isfile(p) and not Path(p).name.startswith("."))
    elif fs.isfile(path):
        found = [path]
    else:
        hint = "" if url or source.startswith(("/", ".", "~")) or source.endswith(SUPPORTED_SUFFIXES) else f" (a hub dataset is read as hf://datasets/{source}/)"
        raise UserError(f"data file not found: {source}{hint}")
    found = [p for p in found if Path(p).suffix in SUPPORTED_SUFFIXES]
    if not found:
        raise UserError(f"{source}: holds no data files ({', '.join(SUPPORTED_SUFFIXES)})")
    return [Shard(fs.unstrip_protocol(p) if url else p, p, fs) for p in found]


def size_of(shard: Shard) -> int:
    """Bytes in the shard, from the filesystem's listing (no read)."""
    return int(shard.fs.info(shard.path).get("size") or 0)


def fingerprint(shard: Shard) -> str:
    """What run.json records of a streamed shard, from the filesystem's listing alone (a stream is not read
    twice to hash it): its size and, where the filesystem gives one, its modification time or ETag."""
    info = shard.fs.info(shard.path)
    changed = next((info[k] for k in ("mtime", "LastModified", "ETag", "etag", "created") if info.get(k)), "")
    return f"size {int(info.get('size') or 0)} {changed}".strip()


def read_rows(shard: Shard, cursor: Cursor = START, skip_bad: bool = False) -> Iterator[tuple[Row, Cursor]]:
    """The rows of `shard` from `cursor` on, each with the cursor after it (see the module docstring)."""
    if shard.suffix == ".parquet":
        yield from _parquet_rows(shard, cursor[0])
    elif shard.suffix in (".csv",) or (shard.suffix == ".json" and _is_array(shard)):
        yield from _whole_rows(shard, cursor[0], skip_bad)
    else:
        yield from _line_rows(shard, cursor, skip_bad)


def _line_rows(shard: Shard, cursor: Cursor, skip_bad: bool) -> Iterator[tuple[Row, Cursor]]:
    offset, line = cursor
    with shard.fs.open(shard.path, "rb") as handle:
        handle.seek(offset)
        for raw in handle:
            offset, line = offset + len(raw), line + 1
            text = _decode(shard, raw, offset - len(raw), line).removesuffix("\n").removesuffix("\r")
            if not text.strip():
                continue
            if shard.suffix == ".txt":
                yield Row({"text": text}, f"{shard.name}:{line}"), (offset, line)
            else:
                yield _json_line(shard.name, line, text, skip_bad, _folder(shard)), (offset, line)  # type: ignore[arg-type]


def _folder(shard: Shard) -> Path | None:
    """Where a local shard's rows resolve relative picture paths; None for a URL (there is no folder to read)."""
    return None if is_url(shard.name) else Path(shard.path).parent.absolute()


def _decode(shard: Shard, raw: bytes, start: int, line: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{shard.name}:{line}: not UTF-8 text (bad byte at offset {start + e.start}); "
                        "re-save it as UTF-8") from None
    return text.removeprefix("\ufeff") if start == 0 else text


def _is_array(shard: Shard) -> bool:
    with shard.fs.open(shard.path, "rb") as handle:
        head = handle.read(4096).decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    return head.startswith("[")


def _whole_rows(shard: Shard, start: int, skip_bad: bool) -> Iterator[tuple[Row, Cursor]]:
    with shard.fs.open(shard.path, "rb") as handle:
        text = _decode(shard, handle.read(), 0, 1)
    name = Path(shard.name)  # the loader's readers print it and resolve pictures against its folder
    rows = _read_csv(name, text) if shard.suffix == ".csv" else _read_json(name, text, skip_bad)
    for n, row in enumerate(rows[start:], start + 1):
        yield row, (n, n)


def _parquet_rows(shard: Shard, start: int) -> Iterator[tuple[Row, Cursor]]:
    import pyarrow.parquet as pq

    with shard.fs.open(shard.path, "rb") as handle:
        try:
            reader = pq.ParquetFile(handle)
        except Exception as e:  # pyarrow raises its own error kinds for a file that is not parquet
            raise UserError(f"{shard.name}: could not be read as parquet: {e}") from None
        base = 0
        for batch in reader.iter_batches(batch_size=_PARQUET_BATCH):
            first = max(start - base, 0)
            if first < batch.num_rows:
                for n, item in enumerate(batch.slice(first).to_pylist(), base + first + 1):
                    yield Row(item, f"{shard.name}:row {n}", folder=_folder(shard)), (n, n)
            base += batch.num_rows
