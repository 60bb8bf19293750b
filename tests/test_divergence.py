"""After a divergence the advice works: the good checkpoint is one whose next step was finite, and
`--resume` with a new train.lr or schedule trains with it instead of the checkpoint's."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_train import make_recipe, tiny_setup  # noqa: F401  (fixture)
from tunesmith.runs.metrics import read_metrics
from tunesmith.train import loop
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.loop import TrainingDiverged, build_trainer, train
from tunesmith.train.optim import build_scheduler


def run_steps(trainer, steps: int) -> None:
    for step in range(steps):
        loop._train_step(trainer, step)
        loop._after_step(trainer, step + 1)


def test_the_checkpoint_that_produced_the_nan_is_not_called_good(tiny_setup, tmp_path, monkeypatch) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=6, save_every=1)
    trainer = build_trainer(recipe)
    real_loss, calls = trainer.objective.loss_sum, {"n": 0}

    def poisoned(model, batch):  # step 3's loss is NaN: the weights of checkpoint step-2 produce it
        calls["n"] += 1
        loss, metrics = real_loss(model, batch)
        return (loss * float("nan"), metrics) if calls["n"] == 3 else (loss, metrics)

    monkeypatch.setattr(trainer.objective, "loss_sum", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3.*last good checkpoint is \S*step-1\. diverged-step-2 holds"
                                               r".*--resume train.lr=0.001"):
        run_steps(trainer, 6)
    checkpoints = trainer.folder.path / "checkpoints"
    assert latest_checkpoint(trainer.folder.path) == checkpoints / "step-1"
    assert (checkpoints / "diverged-step-2" / "COMPLETE").is_file()
    record = json.loads((trainer.folder.path / "run.json").read_text())
    assert record["status"] == "diverged" and record["reason"] == "loss became nan at step 3"


def expected_lrs(lr: float, steps: int, warmup: float, upto: int) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = build_scheduler(optimizer, "cosine", steps, warmup)
    rates = []
    for _ in range(upto):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def test_resume_with_a_lower_lr_trains_with_it(tiny_setup, tmp_path, capsys) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=6, save_every=3, warmup_ratio=0.2)
    run_steps(build_trainer(recipe), 3)
    lower = make_recipe(tiny_setup, tmp_path, max_steps=6, save_every=3, warmup_ratio=0.2, lr=1e-3)
    run = train(lower, resume=True).path
    assert "lr: 0.01 -> 0.001" in capsys.readouterr().err
    logged = [r["lr"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert logged[:3] == pytest.approx(expected_lrs(1e-2, 6, 0.2, 3))
    assert logged[3:] == pytest.approx(expected_lrs(1e-3, 6, 0.2, 6)[3:])
    state = json.loads((run / "run.json").read_text())["state"]
    assert state["schedule"]["lr"] == 1e-3
