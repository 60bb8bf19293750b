"""The batch plan of a streamed run (`data.streaming: true`): micro-batches taken from the stream in order.

A `BatchPlan` (batches.py) knows every micro-batch up front; a stream cannot, so this plan hands out optimizer
steps one after another, `train.grad_accum` micro-batches of `train.batch_size` items each, and remembers the
stream's `Position` after the last step it handed out. The loop saves that position in every checkpoint
(`TrainState.data_position`) and a resumed run `seek`s to it, so step k trains on the same tokens whether the
run was interrupted or not.

Under several processes (`--nproc N`) every rank reads the whole stream and builds every micro-batch of the
step; the loop keeps rank r's share, micro-batches r, r+N, ... (distributed.shard), as it does for a fixed
plan. The split is therefore the one of a single process, N processes with the same global batch train as
one does, and the position after a step is the one global position of the stream: the same on every rank,
which `data_position` checks, so the checkpoint the main process writes resumes every rank. Reading the
stream N times costs tokenizing it N times.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from accelerate.utils import gather_object

from tunesmith.data.packing import collate_flat, collate_packed, collate_padded
from tunesmith.data.stream import Item, Position, StreamSource
from tunesmith.errors import UserError


class StreamPlan:
    """Steps of `accum` micro-batches from `source`, for `steps` optimizer steps (train.max_steps)."""

    def __init__(self, source: StreamSource, *, steps: int, batch_size: int, accum: int, pad_id: int,
                 flat: bool = False) -> None:
        self.source, self._steps, self.batch_size, self.accum = source, steps, batch_size, accum
        self.pad_id, self.flat = pad_id, flat
        self.position = Position()
        self._next_step = 0
        self._items: Iterator[tuple[Item, Position]] | None = None
        self._tokens = 0

    @property
    def steps(self) -> int:
        return self._steps

    def seek(self, position: dict[str, Any] | None, step: int) -> None:
        """Continue from a checkpoint: the stream stands at `position`, and `step` is the next step to train."""
        self.position, self._next_step, self._items = Position.from_json(position), step, None

    def step_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        """The collated micro-batches of step `step`, which must be the step after the last one handed out."""
        if step != self._next_step:
            raise RuntimeError(f"a streamed plan hands out steps in order: step {step} asked, {self._next_step} next")
        if self._items is None:
            self._items = self.source.items(self.position)
        batches: list[dict[str, torch.Tensor]] = []
        self._tokens = 0
        for _ in range(self.accum):
            rows = []
            for _ in range(self.batch_size):
                item, self.position = next(self._items)
                rows.append(item)
            self._tokens += sum(len(row.input_ids) for row in rows)
            batches.append(self._collate(rows))
        self._next_step = step + 1
        return batches

    def real_tokens(self, step: int) -> int:
        """Non-pad tokens of the step last handed out."""
        return self._tokens

    def _collate(self, rows: list[Any]) -> dict[str, torch.Tensor]:
        if self.source.packing and self.flat:
            return collate_flat(rows)
        if self.source.packing:
            return collate_packed(rows, self.pad_id)
        return collate_padded(rows, self.pad_id)


def data_position(objective: Any, accelerator: Any = None) -> dict[str, int] | None:
    """Where the objective's stream stands after its last step (for the checkpoint); None for a fixed plan.

    With an `accelerator` of several processes, every rank's position is gathered and must be the same
    (`same_on_every_rank`): only the main process writes the checkpoint, and its position resumes them all.
    """
    plan = getattr(objective, "plan", None)
    if not isinstance(plan, StreamPlan):
        return None
    position = plan.position.to_json()
    if accelerator is not None and accelerator.num_processes > 1:
        same_on_every_rank(gather_object([position]), plan._next_step)
    return position


def same_on_every_rank(positions: list[dict[str, int]], step: int) -> dict[str, int]:
    """The one position all ranks stand at after `step`; a UserError when they differ, because then the
    ranks read different data (a shard that differs between machines, or changed while being read) and no
    checkpoint could resume them."""
    first = positions[0]
    for rank, position in enumerate(positions[1:], 1):
        if position != first:
            raise UserError(
                f"data.train: the processes read different streams: after step {step} rank 0 stands at {first} "
                f"and rank {rank} at {position}; every process must read the same shards (the same files on "
                "every machine, unchanged while training)"
            )
    return first


def seek(objective: Any, position: dict[str, Any] | None, step: int) -> None:
    """Resume the objective's stream at a checkpoint's position; a fixed plan needs nothing."""
    plan = getattr(objective, "plan", None)
    if isinstance(plan, StreamPlan):
        plan.seek(position, step)
