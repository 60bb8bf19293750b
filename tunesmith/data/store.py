"""The prepared-data store: tokens, loss masks and sample boundaries on disk, memory-mapped, read in place.

Layout: the indexed-dataset pair of nanoGPT's `prepare.py` and Megatron-LM's `preprocess_data.py`, one
folder per cache key, per split (`train`, `eval`):

* `<split>.tokens.bin`  every token id of every sample, end to end: uint16 when the vocabulary fits in
  65,536 ids (2 bytes a token), else uint32;
* `<split>.mask.bin`    one uint8 per token: 1 where the label is the token itself, 0 where it is
  IGNORE_INDEX (a label here is always one or the other, so this is the whole of `labels` in a byte);
* `<split>.index.bin`   int64 offsets, one per sample plus one: sample i is tokens[off[i]:off[i+1]];
* `<split>.truncated.bin` one uint8 per sample;
* `<split>.examples.jsonl` + `<split>.examples.index.bin` the parsed examples (preference, KTO and prompt
  methods build their pairs from them; held-out evaluation renders them), one JSON line each, with
  int64 byte offsets, so example i is read without reading the others;
* `meta.json` the report's facts and the array sizes; `COMPLETE` last, holding the key.

Why this and not Arrow through `datasets` or sharded litdata/mosaic chunks: the arrays are exactly what the
training loop slices (ids, mask, offsets), `np.memmap` reads them with no dependency beyond numpy and no
per-row object, the batch plan addresses samples by index, and the files are plain little-endian arrays any
tool can read. Arrow would add a schema layer and a per-batch conversion on every step; the sharded formats
earn their keep for object-store streaming, which local preparation does not need.

Safety: the folder is written under a hidden temporary name and renamed into place when complete
(`runs/atomic.build_folder`); a reader also requires the `COMPLETE` marker and the key inside `meta.json`,
so a crash mid-write is a miss, never a store that reads as complete. Reading maps the files and parses JSON;
nothing in a store can run code. Deleting a store is safe at any time: a reader that already mapped it keeps
its (unlinked) files until it closes them, and the next run prepares the data again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import numpy as np

from tunesmith.data import example_codec
from tunesmith.data.types import IGNORE_INDEX, Example, Sample

STORE_FORMAT = 1
"""Bump when the layout changes, so stores of an older layout stop matching."""
COMPLETE = "COMPLETE"
SPLITS = ("train", "eval")
T = TypeVar("T")
SUM_TOKENS = 1 << 22
"""Tokens summed at a time when counting trained tokens (a 16 MB temporary)."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id of a vocabulary of `vocab_size`."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


@dataclass
class SampleArrays:
    """Samples as flat arrays, the unit a store is written in: ids and mask end to end, one length and one
    truncation flag per sample."""

    ids: np.ndarray  # int64, every token of every sample
    mask: np.ndarray  # bool, True where the label is the token (False: IGNORE_INDEX)
    lengths: np.ndarray  # int64, tokens per sample
    truncated: np.ndarray  # bool, one per sample

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> SampleArrays:
        ids = np.fromiter((t for s in samples for t in s.input_ids), np.int64)
        labels = np.fromiter((t for s in samples for t in s.labels), np.int64)
        mask = labels != IGNORE_INDEX
        if not np.array_equal(labels[mask], ids[mask]):
            raise ValueError("a label is neither its token nor IGNORE_INDEX; the store cannot hold it")
        return cls(ids, mask, np.array([len(s) for s in samples], np.int64),
                   np.array([s.truncated for s in samples], bool))

    @classmethod
    def stream(cls, ids: np.ndarray) -> SampleArrays:
        """A piece of a raw-text token stream, not yet cut into samples."""
        return cls(ids, np.ones(len(ids), bool), np.zeros(0, np.int64), np.zeros(0, bool))

    @classmethod
    def blocks(cls, ids: np.ndarray, block_len: int) -> SampleArrays:
        """`ids` cut into samples of `block_len` (its length a multiple of it), every token trained."""
        count = len(ids) // block_len
        return cls(ids, np.ones(len(ids), bool), np.full(count, block_len, np.int64), np.zeros(count, bool))

    def samples(self) -> list[Sample]:
        """The samples as Python lists (for the in-memory path)."""
        ends = np.cumsum(self.lengths)
        labels = np.where(self.mask, self.ids, IGNORE_INDEX)
        return [Sample(self.ids[end - n:end].tolist(), labels[end - n:end].tolist(), truncated=bool(cut))
                for n, end, cut in zip(self.lengths.tolist(), ends.tolist(), self.truncated.tolist())]


class SampleWriter:
    """Appends samples of one split to its `.bin` files; `close` returns the split's sizes for meta.json."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype) -> None:
        self.dtype = dtype
        self._tokens = (folder / f"{split}.tokens.bin").open("wb")
        self._mask = (folder / f"{split}.mask.bin").open("wb")
        self._index = (folder / f"{split}.index.bin").open("wb")
        self._truncated = (folder / f"{split}.truncated.bin").open("wb")
        self.samples = 0
        self.tokens = 0
        self._index.write(np.zeros(1, np.int64).tobytes())

    def add(self, arrays: SampleArrays) -> None:
        ids = arrays.ids
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(self.dtype).max):
            raise ValueError(f"a token id does not fit the store's {self.dtype}")
        self._tokens.write(ids.astype(self.dtype).tobytes())
        self._mask.write(arrays.mask.astype(np.uint8).tobytes())
        self._truncated.write(arrays.truncated.astype(np.uint8).tobytes())
        self._index.write((self.tokens + np.cumsum(arrays.lengths, dtype=np.int64)).tobytes())
        self.samples += len(arrays.lengths)
        self.tokens += int(arrays.lengths.sum())

    def close(self) -> dict[str, int]:
        for handle in (self._tokens, self._mask, self._index, self._truncated):
            handle.close()
        return {"samples": self.samples, "tokens": self.tokens}


class ExampleWriter:
    """Appends examples of one split as JSON lines, with their byte offsets."""

    def __init__(self, folder: Path, split: str) -> None:
        self._lines = (folder / f"{split}.examples.jsonl").open("wb")
        self._index = (folder / f"{split}.examples.index.bin").open("wb")
        self.count = 0
        self._at = 0
        self._index.write(np.zeros(1, np.int64).tobytes())

    def add(self, examples: Iterable[Example]) -> None:
        lines = [example_codec.encode(ex) for ex in examples]
        ends = self._at + np.cumsum([len(line) for line in lines], dtype=np.int64)
        self._lines.write(b"".join(lines))
        self._index.write(ends.tobytes())
        self._at = int(ends[-1]) if lines else self._at
        self.count += len(lines)

    def close(self) -> int:
        self._lines.close()
        self._index.close()
        return self.count


def _map(path: Path, dtype: np.dtype | type, count: int) -> np.ndarray:
    """A read-only map of `count` items of `path` (numpy cannot map an empty file: then an empty array)."""
    if count == 0:
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


class _MappedSequence(Sequence[T]):
    """A read-only sequence over mapped files: items are built on access (`_item`), compared by value with any
    sequence, and `+` gives a list, as the lists of samples and examples it stands in for do."""

    def _item(self, i: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> list[T]: ...
    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._item(i)

    def __iter__(self) -> Iterator[T]:
        return (self._item(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == len(self) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[T]) -> list[T]:
        return [*self, *other]


class StoredSamples(_MappedSequence[Sample]):
    """One split's samples, read from the maps on demand; whole-split counts come from numpy, not rows."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, samples: int, tokens: int) -> None:
        self.tokens = _map(folder / f"{split}.tokens.bin", dtype, tokens)
        self.mask = _map(folder / f"{split}.mask.bin", np.uint8, tokens)
        self.offsets = _map(folder / f"{split}.index.bin", np.int64, samples + 1) if samples else np.zeros(1, np.int64)
        self.truncated = _map(folder / f"{split}.truncated.bin", np.uint8, samples)
        self._trained: np.ndarray | None = None  # trained_per_sample, once computed

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _item(self, i: int) -> Sample:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        ids = self.tokens[start:end].astype(np.int64)
        labels = np.where(self.mask[start:end].astype(bool), ids, IGNORE_INDEX)
        return Sample(ids.tolist(), labels.tolist(), truncated=bool(self.truncated[i]))


    def lengths(self) -> np.ndarray:
        """Tokens per sample, as int64."""
        return np.diff(self.offsets)

    def trained_per_sample(self) -> np.ndarray:
        """Trained tokens per sample: sums of the mask between offsets, about `SUM_TOKENS` tokens at a time,
        so no array as long as the whole split is made (a cumulative sum, or numpy's cast of the whole mask
        for `reduceat`, took 400 MB for 100 MB of text). Kept after the first call: the store never changes, and
        the run summary, the preflight notes and the plan each ask (four passes over a 1 GB corpus's mask)."""
        if self._trained is not None:
            return self._trained
        out = np.zeros(len(self), np.int64)
        i = 0
        while i < len(self):
            j = min(max(int(np.searchsorted(self.offsets, self.offsets[i] + SUM_TOKENS, "right")) - 1, i + 1), len(self))
            start, end = int(self.offsets[i]), int(self.offsets[j])
            filled = np.flatnonzero(np.diff(self.offsets[i:j + 1]) > 0)  # reduceat needs rising starts
            if len(filled):
                part = self.mask[start:end].astype(np.int32)
                out[i + filled] = np.add.reduceat(part, self.offsets[i + filled] - start)
            i = j
        self._trained = out
        return out


class StoredExamples(_MappedSequence[Example]):
    """One split's examples, each decoded from its JSON line when asked for."""

    def __init__(self, folder: Path, split: str, count: int) -> None:
        self.lines = _map(folder / f"{split}.examples.jsonl", np.uint8, _size(folder / f"{split}.examples.jsonl"))
        self.offsets = _map(folder / f"{split}.examples.index.bin", np.int64, count + 1)

    def __len__(self) -> int:
        return max(len(self.offsets) - 1, 0)

    def _item(self, i: int) -> Example:
        return example_codec.decode(self.lines[int(self.offsets[i]):int(self.offsets[i + 1])].tobytes())



def _size(path: Path) -> int:
    return path.stat().st_size


def finish(folder: Path, key: str, meta: dict[str, Any]) -> None:
    """Write meta.json, then the COMPLETE marker: the last file, without which the folder is not a store."""
    (folder / "meta.json").write_text(json.dumps({"format": STORE_FORMAT, "key": key, **meta}))
    (folder / COMPLETE).write_text(key)


def read_meta(folder: Path, key: str) -> dict[str, Any] | None:
    """meta.json of a complete store of `key` in this layout, else None (missing, partial, foreign or old)."""
    try:
        if (folder / COMPLETE).read_text() != key:
            return None
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key or meta.get("format") != STORE_FORMAT:
        return None
    return meta


def open_split(folder: Path, split: str, meta: dict[str, Any]) -> tuple[StoredSamples, StoredExamples]:
    """The samples and examples of `split`; raises OSError/ValueError/KeyError when files do not match meta."""
    sizes = meta["splits"][split]
    samples = StoredSamples(folder, split, np.dtype(meta["dtype"]), sizes["samples"], sizes["tokens"])
    return samples, StoredExamples(folder, split, sizes["examples"])
