"""One Python process trains several recipes with different precision settings (a notebook, `compare`, the
web UI, the slow test session): accelerate's process-wide state must not pin the first run's settings."""

from __future__ import annotations

from pathlib import Path

from accelerate import Accelerator

from tests.test_train import make_recipe, tiny_setup  # noqa: F401  (fixture)
from tunesmith.train.loop import build_trainer, trainer_run


def test_training_twice_in_one_process_with_different_mixed_precision(tiny_setup, tmp_path: Path) -> None:
    Accelerator(mixed_precision="no")  # as an earlier run (or the user) left accelerate's singleton state
    modes = []
    for i, mode in enumerate(("bf16", "no", "bf16")):
        trainer = build_trainer(make_recipe(tiny_setup, tmp_path / str(i), max_steps=1, mixed_precision=mode))
        trainer_run(trainer)
        modes.append(trainer.accelerator.mixed_precision)
    assert modes == ["bf16", "no", "bf16"]
