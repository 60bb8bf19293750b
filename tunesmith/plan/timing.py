"""Predicted time per step, per epoch and for the run: model FLOPs per token over the device's achievable FLOP/s.

FLOPs per trained token (dense decoder, N non-embedding parameters): forward 2N; backward 2N for the
activation gradients plus 2N for weight gradients where weights train (full), ~0 for a frozen base;
checkpointing recomputes the forward (+2N); DPO/KTO/PPO add a reference forward (2N). Attention's
sequence-length term is added per token: 4 x layers x hidden x seq_len / 2 forward (causal), tripled with
backward. The output head (vocab x hidden) runs only at positions that carry loss (the fused head), forward
and activation gradient, plus its weight gradient under full fine-tuning: on a small model with a large
vocabulary (SmolLM2-135M: 28M of 135M) it is a quarter of the work. The achievable FLOP/s is the device's
(plan/hardware.py). Steps come from the data's size the way train/batches.py cuts it: packed rows of
max_seq_len (or one sample a row), micro-batches of batch_size, grad_accum per step; train.max_steps wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunesmith.methods import BY_NAME
from tunesmith.plan.memory import TrainSetup
from tunesmith.recipe.spec import Recipe


@dataclass(frozen=True)
class DataSize:
    """What the time depends on from the data: training tokens and samples per epoch, loss-carrying tokens."""

    tokens: int
    samples: int
    trained_tokens: int | None = None

    @property
    def trained_share(self) -> float:
        return min(1.0, self.trained_tokens / self.tokens) if self.trained_tokens and self.tokens else 1.0


@dataclass(frozen=True)
class TimeEstimate:
    step_seconds: float
    steps: int              # optimizer steps of the run (train.max_steps, else epochs)
    epoch_steps: int
    tokens_per_step: float
    max_steps: bool = False  # steps set by train.max_steps
    sampling_left_out: bool = False  # the method samples rollouts each step, which this estimate does not count

    @property
    def epoch_seconds(self) -> float:
        return self.step_seconds * self.epoch_steps

    @property
    def run_seconds(self) -> float:
        return self.step_seconds * self.steps


def flops_per_token(s: TrainSetup) -> float:
    shape = s.shape
    n = shape.params - shape.embed_params - shape.head_params
    attention = 2 * shape.layers * shape.hidden * s.seq_len  # causal: half of 4 x L x h x T
    share = s.trained_share if s.trains_on_samples else 1.0
    head = 2 * shape.vocab * shape.hidden * share  # forward at trained positions
    forward = 2 * n + attention + head
    backward = 2 * n + 2 * attention + head + (2 * n + head if s.adapter_kind.trains_base else 0)
    recompute = forward if s.checkpointing else 0
    reference = forward if s.reference_forward else 0
    return forward + backward + recompute + reference


def row_tokens(recipe: Recipe, size: DataSize) -> float:
    """Tokens of one row: a packed row is full (best-fit packing leaves little room), else a mean sample;
    train.packing packs the samples of methods that train on samples (the others keep one item a row)."""
    if recipe.train.packing and BY_NAME[recipe.method].trains_on_samples:
        return float(min(recipe.train.max_seq_len, size.tokens))
    return size.tokens / max(1, size.samples)


def run_steps(recipe: Recipe, size: DataSize) -> tuple[int, int]:
    """(optimizer steps of the run, steps per epoch), as train/batches.py:plan_batches counts them."""
    t = recipe.train
    rows = math.ceil(size.tokens / row_tokens(recipe, size))
    micro = math.ceil(rows / t.batch_size)
    epoch_steps = max(1, micro // t.grad_accum)
    if t.max_steps is not None:
        return t.max_steps, epoch_steps
    return max(1, int(round(micro * t.epochs)) // t.grad_accum), epoch_steps


def estimate_time(recipe: Recipe, s: TrainSetup, size: DataSize, flops_per_second: float) -> TimeEstimate | None:
    """Seconds per optimizer step on `s.nproc` devices and the run's steps; None when speed or data is unknown."""
    if flops_per_second <= 0 or size.tokens <= 0:
        return None
    t = recipe.train
    tokens = t.batch_size * t.grad_accum * row_tokens(recipe, size)
    steps, epoch_steps = run_steps(recipe, size)
    seconds = tokens * flops_per_token(s) / (flops_per_second * s.nproc)
    return TimeEstimate(step_seconds=seconds, steps=steps, epoch_steps=epoch_steps, tokens_per_step=tokens,
                        max_steps=t.max_steps is not None,
                        sampling_left_out=BY_NAME[recipe.method].generates_rollouts)
