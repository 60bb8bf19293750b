"""Rows of any format (chat, Alpaca, preference, JSONL text...) into the store in two passes, in bounded memory.

The general path (`pipeline._examples`) holds every row, then every example, before tokenizing: memory grows
with the file (about 50 bytes per byte of a ShareGPT file). `text_stream.py` already writes `.txt` corpora in
two passes; this module does the same for every other format the store can hold, reading the files as shards
(`data/shards.py`), one row at a time:

1. `scan`: detect the format from the first rows, parse every row once to count the good ones and collect
   the bad ones (the same `file:line` errors and the same all-or-skip rule as `formats.parse_rows`);
2. read and parse the rows again; the seeded eval split picks the same rows as `pipeline.split_examples`
   (`text_stream.held_out`); slices of about `SLICE_CHARS` characters of each split go to forked workers, at
   most two per worker in flight, which drop the unusable pairs and tokenize; the parent writes each split's
   samples, examples and 64-bit digests (for the duplicate and overlap counts) as slices come back. Raw text
   (a JSONL `text` column) is one EOS-joined stream per split, cut into blocks as `tokenize_split` cuts it.

The store it writes is the one the general path writes for the same recipe (tests/test_data_store_rows.py).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.data import parallel
from tunesmith.data.formats import DETECT_SAMPLE, detect_format, judge_bad_rows, parse_row
from tunesmith.data.leftovers import write_and_load
from tunesmith.data.pairs import usable
from tunesmith.data.parallel import encode_stream, example_chars, forked_map
from tunesmith.data.prepared import PreparedData
from tunesmith.data.progress import PrepProgress
from tunesmith.data.shards import Shard, expand_shards, read_rows, size_of
from tunesmith.data.store import SPLITS, ExampleWriter, SampleArrays, SampleWriter, finish, token_dtype
from tunesmith.data.text_stream import held_out
from tunesmith.data.types import Example, Text, example_images
from tunesmith.errors import DataError, UserError
from tunesmith.recipe.spec import Recipe

logger = logging.getLogger(__name__)

_JOB: tuple[Any, int, str, int | None] | None = None
"""(tokenizer, max_len, train_on, max_prompt_len), set before the workers fork so they inherit it."""


class HasPictures(Exception):
    """The rows name pictures: they take the general path, which decodes every picture once over the
    workers and records the picture files the store must watch (formats.parse_rows)."""


@dataclass
class Scan:
    """What the first pass learnt of some sources: their format, good rows, and the bad rows' messages."""

    shards: list[Shard]
    format: str
    good: int = 0
    total: int = 0
    bad: list[str] = field(default_factory=list)


def scan(sources: str | list[str], fmt: str | None, on_bad_row: str) -> Scan:
    """Pass 1 over `sources` (see the module docstring); raises what `parse_rows` raises for the same rows."""
    shards = expand_shards(sources)
    skip = on_bad_row == "skip"
    if fmt is None:
        readable = (row.data for shard in shards for row, _ in read_rows(shard, skip_bad=skip) if row.bad is None)
        sample = list(itertools.islice(readable, DETECT_SAMPLE))
        if not sample:
            raise DataError(f"no readable rows in {sources}")
        fmt = detect_format(sample)
    found = Scan(shards, fmt)
    for shard in shards:
        for row, _ in read_rows(shard, skip_bad=skip):
            found.total += 1
            try:
                if row.bad is not None:
                    raise DataError(row.bad)
                example = parse_row(row.data, fmt, row.where, row.folder, decode=False)
                if example_images(example):
                    raise HasPictures()
                found.good += 1
            except DataError as e:
                found.bad.append(str(e))
    if not found.total:
        raise UserError(f"data: no rows found in {sources}")
    judge_bad_rows(found.bad, found.good, found.total, fmt, on_bad_row)
    return found


def good_examples(shards: Sequence[Shard], fmt: str, skip: bool) -> Iterator[Example]:
    """The examples of the rows `scan` counted as good, in order (pass 2)."""
    for shard in shards:
        for row, _ in read_rows(shard, skip_bad=skip):
            if row.bad is None:
                try:
                    yield parse_row(row.data, fmt, row.where, row.folder, decode=False)
                except DataError:
                    continue  # counted by the scan


def write_rows_store(folder: Path, key: str, recipe: Recipe, tokenizer: Any, train: Scan, eval_: Scan | None,
                     workers: int, facts: dict[str, Any]) -> None:
    """Fill `folder` with the store of `recipe` (pass 2, see the module docstring); `facts` gets its counts."""
    global _JOB
    spec, text = recipe.data, train.format == "text"
    if text and tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no eos_token to separate documents; set one (tokenizer.eos_token)")
    count = min(train.good, spec.max_rows) if spec.max_rows else train.good
    held = held_out(count, float(spec.eval or 0.0), recipe.train.seed) if eval_ is None else set()
    dtype = token_dtype(len(tokenizer))
    samples = {split: SampleWriter(folder, split, dtype) for split in SPLITS}
    examples = {split: ExampleWriter(folder, split) for split in SPLITS}
    hashes: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    carry = {split: np.zeros(0, np.int64) for split in SPLITS}
    skip, unusable = spec.on_bad_row == "skip", 0
    split_of = (("eval" if i in held else "train", ex)
                for i, ex in enumerate(itertools.islice(good_examples(train.shards, train.format, skip), count)))
    if eval_ is not None:
        split_of = itertools.chain(split_of, (("eval", ex) for ex in good_examples(eval_.shards, train.format, skip)))
    size = sum(size_of(s) for s in train.shards + (eval_.shards if eval_ else []))
    from tunesmith.data.pipeline import example_hashes

    _JOB = (tokenizer, recipe.train.max_seq_len, spec.train_on, spec.max_prompt_len)
    try:
        with PrepProgress(size, workers) as bar:
            tasks, sent = itertools.tee(_slices(split_of))
            procs = workers if size >= parallel.PARALLEL_MIN_CHARS else 1
            for (split, piece), (arrays, keep) in zip(tasks, forked_map(_task, sent, procs)):
                kept = [ex for ex, ok in zip(piece, keep) if ok]
                unusable += len(piece) - len(kept)
                examples[split].add(kept)
                hashes[split].append(example_hashes(kept))
                if text:
                    arrays, carry[split] = _blocks(np.concatenate([carry[split], arrays.ids]), recipe.train.max_seq_len)
                samples[split].add(arrays)
                bar.advance(sum(example_chars(ex) for ex in piece))
    finally:
        _JOB = None
    for split in SPLITS:
        if text and len(carry[split]) > 1:
            samples[split].add(SampleArrays.blocks(carry[split], len(carry[split])))
    sizes = {split: {**samples[split].close(), "examples": examples[split].close()} for split in SPLITS}
    train_h, eval_h = (np.concatenate(hashes[s]) if hashes[s] else np.zeros(0, np.uint64) for s in SPLITS)
    facts.update(format=train.format, rows=count, unusable=unusable, bad_rows=train.bad + (eval_.bad if eval_ else []),
                 duplicates=len(train_h) - len(np.unique(train_h)), overlap=int(np.isin(eval_h, train_h).sum()))
    if unusable:
        logger.warning("dropped %d examples whose answer has no token left to score at max_seq_len %d",
                       unusable, recipe.train.max_seq_len)
    finish(folder, key, {"dtype": dtype.name, "splits": sizes, "facts": facts})


def _slices(split_of: Iterator[tuple[str, Example]]) -> Iterator[tuple[str, list[Example]]]:
    """(split, examples) of about SLICE_CHARS characters each, every split's examples in order."""
    pieces: dict[str, list[Example]] = {split: [] for split in SPLITS}
    chars = dict.fromkeys(SPLITS, 0)
    for split, example in split_of:
        pieces[split].append(example)
        chars[split] += example_chars(example)
        if chars[split] >= parallel.SLICE_CHARS:
            yield split, pieces[split]
            pieces[split], chars[split] = [], 0
    for split in SPLITS:
        if pieces[split]:
            yield split, pieces[split]


def _blocks(stream: np.ndarray, max_len: int) -> tuple[SampleArrays, np.ndarray]:
    """The full blocks of `stream` and what is left over (`parallel.cut_blocks`, one piece at a time)."""
    full = len(stream) // max_len * max_len
    return SampleArrays.blocks(stream[:full], max_len), stream[full:]


def _task(piece: tuple[str, list[Example]]) -> tuple[SampleArrays, list[bool]]:
    """What a worker runs: `_work`, looked up in the worker (a module function pickles by name)."""
    return _work(piece)


def _work(piece: tuple[str, list[Example]]) -> tuple[SampleArrays, list[bool]]:
    """Which examples of a slice are usable, and the samples (or text stream) of those."""
    from tunesmith.data.pipeline import to_samples  # the one-process path, so both give the same ids

    assert _JOB is not None
    tokenizer, max_len, train_on, max_prompt_len = _JOB
    keep = [usable(ex, tokenizer, max_len, max_prompt_len) for ex in piece[1]]
    kept = [ex for ex, ok in zip(piece[1], keep) if ok]
    if kept and all(isinstance(ex, Text) for ex in kept):
        return encode_stream(tokenizer, [ex.text for ex in kept]), keep  # type: ignore[union-attr]
    return SampleArrays.from_samples(to_samples(kept, tokenizer, max_len, train_on, max_prompt_len)), keep


def store_rows(key: str, recipe: Recipe, tokenizer: Any, workers: int, sources: dict[str, str],
               check: Any = None) -> PreparedData | None:
    """The store of `recipe` written in two passes (module docstring) and read back; None when it cannot be
    written (then the general path prepares the data; nothing was tokenized here when the folder failed
    before the first slice). `check(format)` vets the detected format before anything is tokenized."""
    spec = recipe.data
    try:
        train = scan(spec.train, None if spec.format == "auto" else spec.format, spec.on_bad_row)
        if check is not None:
            check(train.format)
        eval_ = scan(spec.eval, train.format, spec.on_bad_row) if isinstance(spec.eval, (str, list)) else None
    except HasPictures:
        return None
    facts: dict[str, Any] = {"detected": spec.format == "auto", "sources": sources, "notes": [], "replay": None}
    return write_and_load(key, spec, sources, lambda folder: write_rows_store(folder, key, recipe, tokenizer, train, eval_, workers, facts))
