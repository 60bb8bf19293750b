"""`data.streaming: true`: training rows read, parsed, tokenized and packed as training consumes them.

Nothing is written to the store and no list of the corpus is built: memory holds one window of rows. The
stream is a pure function of the shards, the recipe and a `Position`, which is what makes `--resume` exact
(as `datasets.IterableDataset.state_dict()` and torchtitan's checkpointed data loader keep a shard and an
offset, but without losing a shuffle buffer on resume):

* epochs: the shards in order, or with `train.shuffle` in a seeded order per epoch (shard-order shuffle); the
  stream cycles through epochs until `train.max_steps`, which streaming therefore requires;
* windows: `data.shuffle_buffer` rows of one shard at a time, read from a cursor (data/shards.py). A window's
  rows are parsed and tokenized, shuffled, packed best-fit into rows of `train.max_seq_len` (raw text: the
  window's documents joined by EOS and cut into blocks, as the store cuts them, but per window), and the
  packed rows shuffled again. Shuffles draw from an RNG seeded by (seed, epoch, shard, window offset), so a
  window rebuilds identically from its place alone: no RNG state and no buffer need saving;
* `Position` = (epoch, shard in the epoch's order, the window's cursor, items of the window already used),
  saved in every checkpoint; a resumed stream reads that window again and skips the used items.

Bad rows are errors naming `shard:line` (or counted and skipped with `data.on_bad_row: skip`).
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tunesmith.data.formats import DETECT_SAMPLE, detect_format, parse_row
from tunesmith.data.packing import join, pack_indices
from tunesmith.data.shards import Shard, read_rows
from tunesmith.data.types import Example, PackedRow, Sample
from tunesmith.errors import DataError, UserError

logger = logging.getLogger(__name__)

Item = PackedRow | Sample


@dataclass(frozen=True)
class Position:
    """Where a stream stands: the next item is item `used` of the window that starts at `offset`/`line`
    of shard `shard` (an index into epoch `epoch`'s shard order)."""

    epoch: int = 0
    shard: int = 0
    offset: int = 0
    line: int = 0
    used: int = 0

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Position:
        return cls(**{k: int(v) for k, v in (raw or {}).items() if k in cls.__dataclass_fields__})


@dataclass
class StreamSource:
    """Everything a stream is a function of, besides its position."""

    shards: list[Shard]
    format: str
    tokenizer: Any
    max_len: int
    train_on: str
    window: int
    seed: int
    shuffle: bool
    packing: bool
    skip_bad: bool = False
    max_prompt_len: int | None = None

    def shard_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.shards)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def items(self, start: Position = Position()) -> Iterator[tuple[Item, Position]]:
        """Every item from `start` on, each with the position after it; endless (epoch after epoch)."""
        position, empty_epochs = start, 0
        while True:
            produced = False
            order = self.shard_order(position.epoch)
            for index in range(position.shard, len(order)):
                cursor = (position.offset, position.line) if index == position.shard else (0, 0)
                skip = position.used if index == position.shard else 0
                for items, window_at in self._windows(position.epoch, index, order[index], cursor):
                    for used, item in enumerate(items[skip:], skip + 1):
                        produced = True
                        yield item, Position(position.epoch, index, window_at[0], window_at[1], used)
                    skip = 0
            empty_epochs = 0 if produced else empty_epochs + 1
            if empty_epochs >= 2:  # a whole epoch (and the rest of the one resumed in) gave nothing
                raise UserError(f"data.train: no usable training samples in {self.shards[0].name} and the other shards")
            position = Position(position.epoch + 1)

    def _windows(self, epoch: int, index: int, shard_id: int,
                 cursor: tuple[int, int]) -> Iterator[tuple[list[Item], tuple[int, int]]]:
        """(items, the window's start cursor) for each window of the shard from `cursor` on."""
        shard = self.shards[shard_id]
        rows = read_rows(shard, cursor, self.skip_bad)
        while True:
            chunk = list(itertools.islice(rows, self.window))
            if not chunk:
                return
            rng = random.Random(f"{self.seed}:{epoch}:{index}:{cursor[0]}")
            yield self._build(chunk, rng), cursor
            cursor = chunk[-1][1]

    def preview(self) -> tuple[list[Example], list[Sample], int]:
        """The first window of the first shard, in file order: (examples, their samples, rows read); what
        `validate` reports on, and a bad first shard failing before a model loads."""
        chunk = list(itertools.islice(read_rows(self.shards[0], (0, 0), self.skip_bad), self.window))
        examples, samples = self._samples(chunk)
        return examples, samples, len(chunk)

    def _build(self, chunk: list[Any], rng: random.Random) -> list[Item]:
        """One window's rows -> its items: parsed, tokenized, shuffled, packed (module docstring)."""
        samples = self._samples(chunk)[1]
        if self.shuffle:
            rng.shuffle(samples)
        if not self.packing:
            return list(samples)
        rows = [join([samples[i] for i in row])
                for row in pack_indices(np.array([len(s) for s in samples], np.int64), self.max_len)]
        if self.shuffle:
            rng.shuffle(rows)
        return list(rows)

    def _samples(self, chunk: list[Any]) -> tuple[list[Example], list[Sample]]:
        from tunesmith.data.pipeline import to_samples  # the store's tokenizing path, so the ids are the same

        examples: list[Example] = []
        for row, _ in chunk:
            try:
                if row.bad is not None:
                    raise DataError(row.bad)
                examples.append(parse_row(row.data, self.format, row.where, row.folder))
            except DataError as e:
                if not self.skip_bad:
                    raise DataError(f"{e}; fix the row, or set data.on_bad_row: skip to leave bad rows out") from None
                logger.warning("skipped a bad row: %s", e)
        samples = to_samples(examples, self.tokenizer, self.max_len, self.train_on, self.max_prompt_len)
        return examples, [s for s in samples if len(s) > 1]


def detect_stream_format(shards: list[Shard], skip_bad: bool) -> str:
    """The format of the first rows of the first shard (what `detect_format` judges a file by)."""
    rows = [row.data for row, _ in itertools.islice(read_rows(shards[0], (0, 0), skip_bad), DETECT_SAMPLE)
            if row.bad is None]
    if not rows:
        raise DataError(f"{shards[0].name}: no readable rows to tell the data format from; set data.format")
    return detect_format(rows)
