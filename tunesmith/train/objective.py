"""What a training method plugs into the shared loop: its batches, its loss, its evaluation.

The loop (loop.py) owns everything else — accumulation, normalisation, clipping, schedules, logging,
checkpoints — so every method gets the same exact-resume and the same guards. A method's loss is a *sum*
over the units of one micro-batch (trained tokens for SFT, pairs for DPO, completions for GRPO); the loop
divides by the units of the whole optimizer step, which keeps gradient accumulation exact.
"""

from __future__ import annotations

from typing import Protocol

import torch
from accelerate import Accelerator

Batch = dict[str, torch.Tensor]


class Objective(Protocol):
    @property
    def steps(self) -> int:
        """Optimizer steps in the whole run."""
        ...

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        """The micro-batches of optimizer step `step` (0-based); the model is there for methods that sample."""
        ...

    def units(self, batch: Batch) -> int:
        """How many loss units (trained tokens, pairs, ...) this micro-batch holds."""
        ...

    def real_tokens(self, step: int) -> int:
        """Non-pad tokens computed on in step `step` (for honest throughput)."""
        ...

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Summed loss over the batch's units, and summed extra metrics (the loop divides by units)."""
        ...

    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        """Held-out metrics; must include `eval_loss` when the method has an eval set."""
        ...
