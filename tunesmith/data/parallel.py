"""Examples -> token arrays, in batches through the fast tokenizer, spread over worker processes.

Tokenizing row by row into Python lists on one core was the wall of a large corpus (0.25 MB/s, ~73 bytes of
memory per byte of text). Here the examples of a split are cut into slices of about `SLICE_CHARS` of text;
each slice is tokenized by one worker (a batch call for raw text, the conversation path of
`data/tokenize.py` for chats, so the ids are the ones the one-process path gives) and comes back as flat
numpy arrays, which the caller writes to the store as they arrive, in order. Raw text is one stream of
documents joined by EOS and cut into blocks of `max_len`, as `tokenize_text` cuts it; the cut is made here,
in the parent, with the part of a block left over carried into the next slice.

Workers are forked (the examples and the tokenizer are inherited, not pickled; tasks are index ranges), with
the tokenizer's own thread pool off in them, one process per core. Small data (under `PARALLEL_MIN_CHARS`)
stays in the calling process: starting workers would cost more than it saves; so does everything where the
operating system cannot fork (Windows).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from tunesmith.data.store import SampleArrays
from tunesmith.data.types import Conversation, Example, Preference, Prompt, Text, Unpaired
from tunesmith.errors import UserError

SLICE_CHARS = 1 << 20
"""Characters of text per worker task: large enough to amortise a task, small enough to balance the cores."""
PARALLEL_MIN_CHARS = 4 << 20
"""Below this much text the split is tokenized in the calling process."""
T = TypeVar("T")
R = TypeVar("R")

_JOB: tuple[Sequence[Example], Any, int, str, int | None] | None = None
"""The split being tokenized, set before the workers fork so they inherit it."""


def default_workers() -> int:
    """All the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def example_chars(example: Example) -> int:
    """The characters of text an example holds (what the progress bar counts as MB)."""
    if isinstance(example, Text):
        return len(example.text)
    if isinstance(example, Conversation):
        return sum(len(m.content) for m in example.messages)
    if isinstance(example, Preference):
        return sum(len(m.content) for m in (*example.prompt, *example.chosen, *example.rejected))
    if isinstance(example, Unpaired):
        return sum(len(m.content) for m in (*example.prompt, *example.completion))
    if isinstance(example, Prompt):
        return sum(len(m.content) for m in example.prompt)
    return 0


def slices(examples: Sequence[Example]) -> list[tuple[int, int, int]]:
    """(start, end, characters) ranges of about SLICE_CHARS of text each."""
    out: list[tuple[int, int, int]] = []
    start = chars = 0
    for i, example in enumerate(examples):
        chars += example_chars(example)
        if chars >= SLICE_CHARS:
            out.append((start, i + 1, chars))
            start, chars = i + 1, 0
    if start < len(examples):
        out.append((start, len(examples), chars))
    return out


def tokenize_split(examples: Sequence[Example], tokenizer: Any, max_len: int, train_on: str,
                   max_prompt_len: int | None = None, num_proc: int = 1,
                   progress: Any = None) -> Iterator[SampleArrays]:
    """The samples of `examples`, as arrays, in order; identical whatever `num_proc` is.

    `progress(characters)` is called as each slice is done.
    """
    global _JOB
    is_text = bool(examples) and all(isinstance(ex, Text) for ex in examples)
    if is_text and tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no eos_token to separate documents; set one (tokenizer.eos_token)")
    ranges = slices(examples)
    _JOB = (examples, tokenizer, max_len, train_on, max_prompt_len)
    try:
        pieces = _run(ranges, num_proc if sum(r[2] for r in ranges) >= PARALLEL_MIN_CHARS else 1)
        pieces = _counted(pieces, ranges, progress)
        yield from cut_blocks(pieces, max_len) if is_text else pieces
    finally:
        _JOB = None


def _counted(pieces: Iterable[SampleArrays], ranges: list[tuple[int, int, int]], progress: Any) -> Iterator[SampleArrays]:
    for piece, (_, _, chars) in zip(pieces, ranges):
        if progress is not None:
            progress(chars)
        yield piece


def _run(ranges: list[tuple[int, int, int]], num_proc: int) -> Iterator[SampleArrays]:
    tasks = [(start, end) for start, end, _ in ranges]
    yield from forked_map(_task, tasks, min(num_proc, len(tasks)) if len(tasks) > 1 else 1)


def forked_map(work: Callable[[T], R], tasks: Iterable[T], workers: int) -> Iterator[R]:
    """`map(work, tasks)` over `workers` forked processes, results in order, at most two tasks per worker in
    flight, so a lazy `tasks` (slices read from files) is consumed only as fast as it is worked.

    `work` must be a module-level function (it is sent by name); what it needs beyond its task is a module
    global set before the call, which the fork inherits. One process (a plain `map`) when `workers` <= 1 or
    the operating system cannot fork.
    """
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from map(work, tasks)
        return
    with tokenizer_threads_off():
        pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        pending: collections.deque = collections.deque()
        for task in tasks:
            pending.append(pool.apply_async(work, (task,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()


@contextlib.contextmanager
def tokenizer_threads_off() -> Iterator[None]:
    """Fork with TOKENIZERS_PARALLELISM=false: each worker is one core, and the tokenizers library does not
    warn about a fork after its thread pool ran. The caller's own setting is restored after the fork."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def _task(task: tuple[int, int]) -> SampleArrays:
    """What a worker runs: `_work`, looked up in the worker (a module function pickles by name)."""
    return _work(task)


def _work(task: tuple[int, int]) -> SampleArrays:
    """One slice: raw text as one EOS-joined stream (cut into blocks by the parent), else one sample each."""
    from tunesmith.data.pipeline import to_samples  # the one-process path, so both give the same ids

    assert _JOB is not None
    examples, tokenizer, max_len, train_on, max_prompt_len = _JOB
    chunk = examples[task[0]:task[1]]
    if not all(isinstance(ex, Text) for ex in chunk):
        return SampleArrays.from_samples(to_samples(list(chunk), tokenizer, max_len, train_on, max_prompt_len))
    return encode_stream(tokenizer, [ex.text for ex in chunk])  # type: ignore[union-attr]


def encode_stream(tokenizer: Any, texts: list[str]) -> SampleArrays:
    """Documents tokenized (with the tokenizer's own special tokens) and joined, each ended by EOS."""
    eos = tokenizer.eos_token_id
    return SampleArrays.stream(np.fromiter(itertools.chain.from_iterable(
        ids if ids and ids[-1] == eos else [*ids, eos] for ids in encode_texts(tokenizer, texts)), np.int64))


def encode_texts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """`tokenizer(texts)["input_ids"]`, through the Rust backend's batch call when it gives the same ids.

    transformers' wrapper converts every encoding to a dict of Python lists (a third of the time on raw
    text); `encode_batch_fast` skips that and the offsets. The first text is encoded both ways: the two
    differ only if the wrapper adds tokens the backend does not, and then the wrapper is used.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and texts:
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        ids = [encoding.ids for encoding in encode(texts)]
        if ids[0] == list(tokenizer(texts[0], verbose=False)["input_ids"]):
            return ids
    return tokenizer(texts, verbose=False)["input_ids"]


def cut_blocks(pieces: Iterable[SampleArrays], max_len: int) -> Iterator[SampleArrays]:
    """Cut a stream of tokens, arriving in pieces, into blocks of `max_len` (a last block of one token is
    dropped: it teaches nothing), exactly as `tokenize_text` cuts the whole stream."""
    carry = np.zeros(0, np.int64)
    for piece in pieces:
        stream = np.concatenate([carry, piece.ids])
        full = len(stream) // max_len * max_len
        if full:
            yield SampleArrays.blocks(stream[:full], max_len)
        carry = stream[full:]
    if len(carry) > 1:
        yield SampleArrays.blocks(carry, len(carry))
