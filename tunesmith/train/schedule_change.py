"""Resuming with a different learning rate or schedule applies it, and says so.

A checkpoint restores the optimizer's and scheduler's state, learning rates included: without this step a
`--resume train.lr=1e-5` after a divergence kept the checkpoint's rate (the scheduler's `base_lrs` came back
from the file), so the advice "lower train.lr and resume" could not work. The schedule's shape (scheduler
kind, warmup, total steps) is always rebuilt from the current recipe, since only numbers are saved; the
base rate is set here from the recipe, and the current rate recomputed at the restored step.
"""

from __future__ import annotations

from typing import Any

import torch


def schedule_settings(lr: float, scheduler: str, warmup_ratio: float, steps: int) -> dict[str, Any]:
    """What the loop keeps in its checkpointed state to notice a change on resume."""
    return {"lr": lr, "scheduler": scheduler, "warmup_ratio": warmup_ratio, "steps": steps}


def apply_schedule_change(optimizer: torch.optim.Optimizer, scheduler: Any, saved: dict[str, Any] | None,
                          current: dict[str, Any]) -> list[str]:
    """Set the recipe's base learning rate on a just-restored optimizer and scheduler; return what changed
    (empty when nothing did), as `key: old -> new` lines for the user."""
    changed = [f"{key}: {saved[key]} -> {current[key]}" for key in current
               if saved is not None and key in saved and saved[key] != current[key]]
    if scheduler is None:
        for group in optimizer.param_groups:
            group["lr"] = current["lr"]
        return changed
    scheduler.base_lrs = [current["lr"] for _ in optimizer.param_groups]
    rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, rate in zip(optimizer.param_groups, rates):
        group["initial_lr"] = current["lr"]
        group["lr"] = rate
    scheduler._last_lr = rates
    return changed
