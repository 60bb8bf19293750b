"""Raw-text files straight into the store, in two passes over the files, never holding the corpus.

The general path (`pipeline._prepare`) parses every row into a list of examples before tokenizing: about
1.8 bytes of memory per byte of raw text, so a few GB at the seed's "gigabytes of domain text". For the
common CPT case (every source a `.txt` file, the eval split a fraction of train, no replay) this module does
the same work in bounded memory:

1. count the non-blank lines, so the seeded eval split picks exactly the lines `split_examples` would;
2. read the lines again in slices of about `SLICE_CHARS` characters, send each train slice to a worker
   (at most two slices per worker in flight) and write the returned token stream, cut into blocks as
   `tokenize_text` cuts it, together with the slice's examples and their 64-bit digests (for the duplicate
   count); the few eval lines are kept and tokenized at the end.

The result is the store the general path writes for the same recipe (tests/test_data_store.py compares them).
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.data import parallel
from tunesmith.data.leftovers import write_and_load
from tunesmith.data.loading import iter_text_lines
from tunesmith.data.parallel import cut_blocks, encode_stream, forked_map, tokenize_split
from tunesmith.data.prepared import PreparedData
from tunesmith.data.progress import PrepProgress
from tunesmith.data.store import ExampleWriter, SampleArrays, SampleWriter, finish, token_dtype
from tunesmith.data.types import Text
from tunesmith.errors import UserError
from tunesmith.recipe.spec import Recipe

logger = logging.getLogger(__name__)

_TOKENIZER: Any = None
"""The tokenizer the workers inherit when they fork."""


def iter_lines(files: list[Path]) -> Iterator[str]:
    """The non-blank lines of `files`, as `loading.text_lines` returns them, one at a time."""
    for file in files:
        yield from iter_text_lines(file)


def count_lines(files: list[Path]) -> int:
    """Non-blank lines in all `files`; an empty file or a byte that is not UTF-8 is the loader's error."""
    total = 0
    for file in files:
        found = sum(1 for _ in iter_text_lines(file))
        if not found:
            raise UserError(f"{file}: the file is empty")
        total += found
    return total


def held_out(count: int, fraction: float, seed: int) -> set[int]:
    """The line numbers `pipeline.split_examples` holds out of `count` examples (the same seeded shuffle)."""
    if fraction <= 0 or count < 2:
        return set()
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return set(order[: max(1, round(count * fraction))])


def digests(texts: list[str]) -> np.ndarray:
    """The 64-bit digests `pipeline.count_duplicates` counts, of raw-text rows."""
    from tunesmith.data.pipeline import example_hashes

    return example_hashes([Text(text) for text in texts])


def write_text_store(folder: Path, key: str, recipe: Recipe, tokenizer: Any, files: list[Path], workers: int,
                     facts: dict[str, Any]) -> None:
    """Fill `folder` with the store of a raw-text recipe (see the module docstring); `facts` gets its counts."""
    spec, max_len = recipe.data, recipe.train.max_seq_len
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no eos_token to separate documents; set one (tokenizer.eos_token)")
    count = count_lines(files)
    count = min(count, spec.max_rows) if spec.max_rows else count
    held = held_out(count, float(spec.eval or 0.0), recipe.train.seed)
    dtype = token_dtype(len(tokenizer))
    samples, examples = SampleWriter(folder, "train", dtype), ExampleWriter(folder, "train")
    eval_texts: list[str] = []
    hashes: list[np.ndarray] = []
    with PrepProgress(sum(f.stat().st_size for f in files), workers) as bar:

        def train_slices() -> Iterator[list[str]]:
            lines = itertools.islice(iter_lines(files), count)
            piece: list[str] = []
            chars = 0
            for i, line in enumerate(lines):
                if i in held:
                    eval_texts.append(line)
                    continue
                piece.append(line)
                chars += len(line)
                if chars >= parallel.SLICE_CHARS:
                    yield piece
                    piece, chars = [], 0
            if piece:
                yield piece

        def streams() -> Iterator[SampleArrays]:
            for texts, stream in _encoded(train_slices(), tokenizer, workers):
                examples.add(Text(text) for text in texts)
                hashes.append(digests(texts))
                bar.advance(sum(len(text) for text in texts))
                yield stream

        for block in cut_blocks(streams(), max_len):
            samples.add(block)
    train_sizes = {**samples.close(), "examples": examples.close()}
    eval_sizes = _write_eval(folder, recipe, tokenizer, eval_texts, dtype)
    train_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    facts.update(rows=count, duplicates=len(train_hashes) - len(np.unique(train_hashes)),
                 overlap=int(np.isin(digests(eval_texts), train_hashes).sum()))
    finish(folder, key, {"dtype": dtype.name, "splits": {"train": train_sizes, "eval": eval_sizes}, "facts": facts})


def _write_eval(folder: Path, recipe: Recipe, tokenizer: Any, texts: list[str], dtype: np.dtype) -> dict[str, int]:
    samples, examples = SampleWriter(folder, "eval", dtype), ExampleWriter(folder, "eval")
    held = [Text(text) for text in texts]
    for piece in tokenize_split(held, tokenizer, recipe.train.max_seq_len, recipe.data.train_on):
        samples.add(piece)
    examples.add(held)
    return {**samples.close(), "examples": examples.close()}


def _encoded(slices: Iterator[list[str]], tokenizer: Any, workers: int) -> Iterator[tuple[list[str], SampleArrays]]:
    """(texts, their EOS-joined token stream) per slice, in order; `parallel.forked_map` keeps at most 2
    slices per worker in flight, so the files are read only as fast as they are tokenized."""
    global _TOKENIZER
    _TOKENIZER = tokenizer
    texts, sent = itertools.tee(slices)
    try:
        yield from zip(texts, forked_map(_stream_task, sent, workers))
    finally:
        _TOKENIZER = None


def _stream_task(texts: list[str]) -> SampleArrays:
    return encode_stream(_TOKENIZER, texts)


def store_text(key: str, recipe: Recipe, tokenizer: Any, files: list[Path], workers: int,
               sources: dict[str, str]) -> PreparedData | None:
    """The store of a raw-text recipe written in two passes (see the module docstring) and read back; None
    when it cannot be written (then the general path prepares the data)."""
    facts: dict[str, Any] = {"format": "text", "detected": recipe.data.format == "auto", "bad_rows": [],
                             "sources": sources, "notes": [], "unusable": 0, "replay": None}
    return write_and_load(key, recipe.data, sources, lambda folder: write_text_store(folder, key, recipe, tokenizer, files, workers, facts))
