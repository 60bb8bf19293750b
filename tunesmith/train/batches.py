"""The order of micro-batches for a whole run, fixed up front from the seed.

Planning every micro-batch before training starts (rather than iterating a shuffling DataLoader) is what
makes resume exact: optimizer step k always consumes micro-batches [k*accum, (k+1)*accum), whether the
run was interrupted or not.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tunesmith.data.packing import collate_flat, collate_packed, collate_padded, pack
from tunesmith.data.types import PackedRow, Sample


@dataclass
class BatchPlan:
    """Micro-batches (lists of rows) in training order, grouped `accum` per optimizer step."""

    micro_batches: list[list[PackedRow] | list[Sample]]
    accum: int
    packed: bool
    pad_id: int
    flat: bool = False
    """Packed micro-batches become one row each (`collate_flat`): what flash attention needs."""

    @property
    def steps(self) -> int:
        return len(self.micro_batches) // self.accum

    def step_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        """The collated micro-batches of optimizer step `step` (0-based)."""
        chunk = self.micro_batches[step * self.accum:(step + 1) * self.accum]
        return [self.collate(rows) for rows in chunk]

    def real_tokens(self, step: int) -> int:
        """Non-pad tokens the model computes on in step `step` (the honest throughput numerator)."""
        chunk = self.micro_batches[step * self.accum:(step + 1) * self.accum]
        return sum(len(row.input_ids) for rows in chunk for row in rows)

    def collate(self, rows: Sequence[PackedRow] | Sequence[Sample]) -> dict[str, torch.Tensor]:
        if self.packed and self.flat:
            return collate_flat(list(rows))  # type: ignore[arg-type]
        if self.packed:
            return collate_packed(list(rows), self.pad_id)  # type: ignore[arg-type]
        return collate_padded(list(rows), self.pad_id)  # type: ignore[arg-type]


def plan_batches(
    samples: list[Sample],
    *,
    batch_size: int,
    accum: int,
    epochs: float,
    max_steps: int | None,
    max_seq_len: int,
    packing: bool,
    pad_id: int,
    seed: int,
    shuffle: bool = True,
    flat: bool = False,
) -> BatchPlan:
    """Shuffle (per epoch, seeded), pack or not, and cut into micro-batches for the whole run.

    `shuffle=False` keeps the samples' order (packed rows stay in best-fit order). Fractional epochs take a
    prefix of the last epoch. `max_steps` wins over epochs, cycling through further epochs if it needs more
    data than `epochs` gives.
    """
    if not samples:
        raise ValueError("no training samples")
    micro: list[list] = []
    per_epoch: int | None = None
    epoch = 0
    wanted_micro = None if max_steps is None else max_steps * accum
    while True:
        rng = random.Random(seed * 1_000_003 + epoch)
        order = list(samples)
        if shuffle:
            rng.shuffle(order)
        rows: list = pack(order, max_seq_len) if packing else order
        if packing and shuffle:
            rng.shuffle(rows)
        epoch_batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        per_epoch = per_epoch or len(epoch_batches)
        micro.extend(epoch_batches)
        epoch += 1
        if wanted_micro is not None:
            if len(micro) >= wanted_micro:
                micro = micro[:wanted_micro]
                break
        elif epoch >= math.ceil(epochs):
            micro = micro[: max(accum, int(round(per_epoch * epochs)))]
            break
    usable = (len(micro) // accum) * accum
    return BatchPlan(micro_batches=micro[:usable], accum=accum, packed=packing, pad_id=pad_id, flat=flat)
