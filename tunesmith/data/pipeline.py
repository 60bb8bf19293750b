"""Recipe data block -> tokenized train/eval samples, plus the facts the health report needs.

One function, `prepare_data`, used by both `tunesmith validate` and `tunesmith train`, so what the
report describes is exactly what training consumes. Its result is written once to a memory-mapped store
(`data/store.py`) under a key of everything it depends on (`data/cache.py`), and read from there, so a
second run with the same inputs skips parsing and tokenizing and no run holds the tokens in memory.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tunesmith.data.cache import HUB, cache_key, load_prepared, store_prepared
from tunesmith.data.formats import ParsedData, parse_rows
from tunesmith.data.loading import load_rows, text_files, text_lines
from tunesmith.data.mixing import mix_replay
from tunesmith.data.pairs import drop_unusable, tokenize_answer
from tunesmith.data.parallel import default_workers, tokenize_split
from tunesmith.data.prepared import PreparedData
from tunesmith.data.progress import PrepProgress, text_size
from tunesmith.data.row_stream import store_rows
from tunesmith.data.shards import expand_shards, fingerprint
from tunesmith.data.store import SampleArrays
from tunesmith.data.stream import StreamSource, detect_stream_format
from tunesmith.data.templates import apply_template
from tunesmith.data.text_stream import store_text
from tunesmith.data.tokenize import tokenize_conversation, tokenize_prompt, tokenize_text
from tunesmith.data.types import IGNORE_INDEX, Conversation, Example, Preference, Prompt, Sample, Text, Unpaired
from tunesmith.errors import UserError
from tunesmith.methods import METHOD_FORMATS
from tunesmith.recipe.spec import DataSpec, Recipe

logger = logging.getLogger(__name__)


def prepare_data(recipe: Recipe, tokenizer: Any, *, check_method: bool = True) -> PreparedData:
    """Load, parse, split, template and tokenize the recipe's data (and mix replay data when asked).

    `check_method=False` (used by `data stats`) accepts any format; training always checks that the
    detected format suits the method. With `data.cache` on, the result is written to the data store and read
    from there; one prepared earlier from the same files, tokenizer and settings is read back instead of
    prepared again (`from_cache` is then True); the tokenizer gets the
    recipe's chat template either way, as callers rely on it.
    """
    apply_template(tokenizer, recipe.data.template)  # first: the cache key hashes the template in force
    if recipe.data.streaming:
        return _prepare_stream(recipe, tokenizer, check_method)
    sources = data_sources(recipe.data) if recipe.data.cache else {}
    key = cache_key(recipe, tokenizer, sources) if sources else None
    cached = load_prepared(key) if key else None
    if cached is not None:
        if check_method:
            _check_method(cached.format, recipe.method)
        if cached.bad_rows:
            logger.warning("skipped %d rows as bad; first: %s", len(cached.bad_rows), cached.bad_rows[0])
    data = cached if cached is not None else _prepare(recipe, tokenizer, check_method, key, sources)
    if not data.train:
        raise UserError(f"data.train: no usable training samples in {recipe.data.train}")
    return data


def data_sources(spec: DataSpec) -> dict[str, str]:
    """sha256 of every file the data block reads (train, an eval file, replay); hub ids map to "hub"."""
    sources = hash_sources(spec.train, spec.eval if isinstance(spec.eval, (str, list)) else None)
    if spec.replay is not None:
        sources.update(hash_sources(spec.replay.train, None))
    return sources


def _prepare_stream(recipe: Recipe, tokenizer: Any, check_method: bool) -> PreparedData:
    """`data.streaming`: the training rows as a stream (data/stream.py). `train` holds only the first window's
    samples (the report's preview; a bad first shard fails before the model loads), never the corpus; an eval
    file, small by nature, is prepared in memory."""
    spec, max_len = recipe.data, recipe.train.max_seq_len
    shards = expand_shards(spec.train)
    fmt = spec.format if spec.format != "auto" else detect_stream_format(shards, spec.on_bad_row == "skip")
    if check_method:
        _check_method(fmt, recipe.method)
    eval_examples: list[Example] = []
    if isinstance(spec.eval, (str, list)):
        eval_examples = _load_examples(spec.eval, fmt, spec).examples
    source = StreamSource(shards, fmt, tokenizer, max_len, spec.train_on, spec.shuffle_buffer, recipe.train.seed,
                          recipe.train.shuffle, recipe.train.packing, spec.on_bad_row == "skip", spec.max_prompt_len)
    examples, samples, rows = source.preview()
    return PreparedData(format=fmt, detected=spec.format == "auto", train=samples, train_examples=examples,
                        eval=to_samples(eval_examples, tokenizer, max_len, spec.train_on, spec.max_prompt_len),
                        eval_examples=eval_examples, rows=rows, bad_rows=[], stream=source,
                        sources={shard.name: fingerprint(shard) for shard in shards})


def _prepare(recipe: Recipe, tokenizer: Any, check_method: bool, key: str | None,
             sources: dict[str, str]) -> PreparedData:
    """Parse, then tokenize straight into the store when there is a key (so the tokens are never all in
    memory), else into lists; replay mixes whole lists, so it is stored after mixing."""
    spec = recipe.data
    files = text_files(spec.train) if key and _streamable(spec) else None
    if key and files:  # raw-text files: two passes straight into the store, the corpus never in memory
        if check_method:
            _check_method("text", recipe.method)
        stored = store_text(key, recipe, tokenizer, files, _workers(spec), sources)
        if stored is not None:
            return stored
    if key and spec.replay is None:  # any other format: two passes into the store, the rows never all in memory
        stored = store_rows(key, recipe, tokenizer, _workers(spec), sources,
                            (lambda fmt: _check_method(fmt, recipe.method)) if check_method else None)
        if stored is not None:
            return stored
    data = _examples(recipe, tokenizer, check_method)
    if key and data.sources != sources:  # a file rewritten while it was read: do not file it under the old hash
        key = None
    if key and spec.replay is None:
        with PrepProgress(text_size(data.train_examples, data.eval_examples), _workers(spec)) as bar:
            splits = {"train": _tokenized(recipe, tokenizer, data.train_examples, bar),
                      "eval": _tokenized(recipe, tokenizer, data.eval_examples, bar)}
            stored = store_prepared(key, data, splits, len(tokenizer))
        if stored is not None:
            return stored
    with PrepProgress(text_size(data.train_examples, data.eval_examples), _workers(spec)) as bar:
        data.train = [s for piece in _tokenized(recipe, tokenizer, data.train_examples, bar) for s in piece.samples()]
        data.eval = [s for piece in _tokenized(recipe, tokenizer, data.eval_examples, bar) for s in piece.samples()]
    if spec.replay is not None:
        replay_parsed = _load_examples(spec.replay.train, None if spec.replay.format == "auto" else spec.replay.format, spec)
        replay_samples = to_samples(replay_parsed.examples, tokenizer, recipe.train.max_seq_len, spec.train_on)
        data.train, data.replay = mix_replay(list(data.train), replay_samples, spec.replay.ratio, recipe.train.seed)
        if key and data.train:
            splits = {"train": [SampleArrays.from_samples(data.train)], "eval": [SampleArrays.from_samples(data.eval)]}
            return store_prepared(key, data, splits, len(tokenizer)) or data
    return data


def _streamable(spec: DataSpec) -> bool:
    """Whether `text_stream` can prepare this data block: raw text split by a fraction, nothing mixed in."""
    return spec.replay is None and not isinstance(spec.eval, (str, list)) and spec.format in ("auto", "text")


def _workers(spec: DataSpec) -> int:
    return spec.num_proc or default_workers()


def _tokenized(recipe: Recipe, tokenizer: Any, examples: Sequence[Example], bar: PrepProgress) -> Iterator[SampleArrays]:
    spec = recipe.data
    return tokenize_split(examples, tokenizer, recipe.train.max_seq_len, spec.train_on, spec.max_prompt_len,
                          _workers(spec), bar.advance)


def _examples(recipe: Recipe, tokenizer: Any, check_method: bool) -> PreparedData:
    """Rows parsed, split and checked: the report's facts and the examples, no samples yet."""
    spec = recipe.data
    fmt = spec.format if spec.format != "auto" else None
    parsed = _load_examples(spec.train, fmt, spec)
    if check_method:
        _check_method(parsed.format, recipe.method)
    examples = parsed.examples[: spec.max_rows] if spec.max_rows else parsed.examples
    bad, pictures = list(parsed.bad_rows), list(parsed.pictures)
    if isinstance(spec.eval, (str, list)):
        eval_parsed = _load_examples(spec.eval, parsed.format, spec)
        train_examples, eval_examples = examples, eval_parsed.examples
        bad += eval_parsed.bad_rows
        pictures += eval_parsed.pictures
    else:
        train_examples, eval_examples = split_examples(examples, spec.eval or 0.0, recipe.train.seed)
    max_len, max_prompt_len = recipe.train.max_seq_len, spec.max_prompt_len
    train_examples, unusable = drop_unusable(train_examples, tokenizer, max_len, max_prompt_len)
    eval_examples, eval_unusable = drop_unusable(eval_examples, tokenizer, max_len, max_prompt_len)
    data = PreparedData(
        format=parsed.format, detected=parsed.detected, train=[], eval=[], train_examples=train_examples,
        eval_examples=eval_examples, rows=len(examples), bad_rows=bad, sources=data_sources(spec),
        duplicates=count_duplicates(train_examples), overlap=count_overlap(train_examples, eval_examples),
        unusable=unusable + eval_unusable, pictures=pictures,
    )
    if data.unusable:
        logger.warning("dropped %d examples whose answer has no token left to score at max_seq_len %d%s",
                       data.unusable, max_len, f" and max_prompt_len {max_prompt_len}" if max_prompt_len else "")
    return data


def _check_method(fmt: str, method: str) -> None:
    if fmt not in METHOD_FORMATS[method]:
        raise UserError(
            f"data.train is in '{fmt}' format, which method: {method} cannot train on "
            f"(it needs {' or '.join(METHOD_FORMATS[method])}); change method or the data"
        )


def _load_examples(sources: str | list[str], fmt: str | None, spec: DataSpec) -> ParsedData:
    lines = text_lines(sources) if fmt in (None, "text") else None
    if lines is not None:  # raw-text files: a Text per line, as parse_rows would make, without a Row each
        return ParsedData([Text(line) for line in lines], "text", detected=fmt is None)
    rows = load_rows(sources, split=spec.split, on_bad_row=spec.on_bad_row)
    if not rows:
        raise UserError(f"data: no rows found in {sources}")
    return parse_rows(rows, fmt or "auto", on_bad_row=spec.on_bad_row, workers=_workers(spec))


def split_examples(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out `fraction` of the examples (at least one when fraction > 0), chosen by a seeded shuffle."""
    if fraction <= 0 or len(examples) < 2:
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, round(len(examples) * fraction))
    held = set(order[:n_eval])
    train = [ex for i, ex in enumerate(examples) if i not in held]
    eval_ = [ex for i, ex in enumerate(examples) if i in held]
    return train, eval_


def to_samples(examples: list[Example], tokenizer: Any, max_len: int, train_on: str,
               max_prompt_len: int | None = None) -> list[Sample]:
    """Tokenize examples: conversations one sample each; raw texts concatenated with EOS and cut in blocks.

    Preference and prompt-only rows are tokenized for inspection (the chosen answer, fitted as the preference
    methods fit it; the bare prompt); the preference and RL methods build their own pairs from the examples.
    """
    texts = [ex.text for ex in examples if isinstance(ex, Text)]
    samples = tokenize_text(tokenizer, texts, max_len) if texts else []
    for ex in examples:
        if isinstance(ex, Conversation):
            samples.append(tokenize_conversation(tokenizer, ex, max_len, train_on))
        elif isinstance(ex, Preference):
            samples.append(tokenize_answer(tokenizer, ex.prompt, ex.chosen, max_len, max_prompt_len))
        elif isinstance(ex, Unpaired):
            samples.append(tokenize_answer(tokenizer, ex.prompt, ex.completion, max_len, max_prompt_len))
        elif isinstance(ex, Prompt):
            ids = tokenize_prompt(tokenizer, ex.prompt)[:max_len]
            samples.append(Sample(ids, [IGNORE_INDEX] * len(ids)))
    return samples


def example_hashes(examples: Sequence[Example]) -> np.ndarray:
    """A 64-bit digest per example (uint64): the duplicate counts hold 8 bytes a row, not copies of the corpus.
    Two different rows share a digest with odds of about n²/2⁶⁵, under one in a million up to 6 million rows."""
    def digest(example: Example) -> int:
        text = example.text if isinstance(example, Text) else repr(example)  # a dataclass repr is slow
        return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")

    return np.fromiter((digest(ex) for ex in examples), np.uint64, count=len(examples))


def count_duplicates(examples: Sequence[Example]) -> int:
    """Examples identical to an earlier one (they are kept: the report only counts them)."""
    return len(examples) - len(np.unique(example_hashes(examples)))


def count_overlap(train: Sequence[Example], eval_: Sequence[Example]) -> int:
    """Eval examples that also occur in train: a held-out score on them would be inflated."""
    return int(np.isin(example_hashes(eval_), example_hashes(train)).sum())


def hash_sources(train: str | list[str], eval_: str | list[str] | None) -> dict[str, str]:
    """sha256 of every local data file (hub ids are recorded by name), for run.json reproducibility."""
    names = [train] if isinstance(train, str) else list(train)
    if eval_ is not None:
        names += [eval_] if isinstance(eval_, str) else list(eval_)
    out: dict[str, str] = {}
    for name in names:
        path = Path(name)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            out[str(file)] = _sha256(file) if file.is_file() else HUB
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
