"""After a non-finite loss: which checkpoint is good, and what to do next.

The loss of step s is computed with the weights after s-1 updates, which is exactly what checkpoint
`step-(s-1)` holds: resuming from it replays the same batch on the same weights and diverges again, whatever
the new learning rate. So a *good* checkpoint is one whose next step's loss was finite, i.e. one saved before
step s-1. The bad one is renamed `diverged-step-N` (kept for inspection, ignored by --resume and rotation),
so `--resume` continues from the last good one.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.train.checkpoint import CHECKPOINTS, latest_checkpoint, list_checkpoints


def set_aside_bad_checkpoint(run_dir: Path, updates: int) -> tuple[Path | None, Path | None]:
    """Rename the checkpoint of the weights after `updates` updates (the ones that gave the non-finite loss);
    return (newest good checkpoint, where the bad one went)."""
    aside = None
    for step, path in list_checkpoints(run_dir):
        if step >= updates:
            aside = path.with_name(f"diverged-{path.name}")
            path.replace(aside)
    return latest_checkpoint(run_dir), aside


def divergence_advice(good: Path | None, aside: Path | None, lr: float, max_grad_norm: float) -> str:
    """What to change and which command continues the run."""
    moved = (f" {aside.name} holds the weights that produced it and was set aside (in {CHECKPOINTS}/)."
             if aside else "")
    change = (f"Lower train.lr (now {lr:g}, e.g. train.lr={lr / 10:g}) or train.max_grad_norm (now {max_grad_norm:g}), "
              "or check the data for broken rows")
    if good is None:
        return f"There is no good checkpoint to go back to.{moved} {change}, then start over with --overwrite."
    return (f"The last good checkpoint is {good}.{moved} {change}, then continue from it: "
            f"tunesmith train RECIPE --resume train.lr={lr / 10:g}")
