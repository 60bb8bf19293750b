"""Checkpoints: atomic under a crash, rotated, and resuming exactly where the run stopped."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tunesmith.errors import UserError
from tunesmith.train import checkpoint as ckpt
from tunesmith.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def build(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """A model with a frozen 'base' layer and dropout, AdamW and a warmup schedule."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.Dropout(0.3), nn.Tanh(), nn.Linear(16, 16), nn.Dropout(0.3), nn.Linear(16, 1)
    )
    model[0].requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
    return model, optimizer, scheduler


def train(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: object, steps: int) -> None:
    """Data comes from every RNG a loop may touch, so each one must be restored for an exact resume."""
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 6)
        target = x.sum(dim=1, keepdim=True) + random.gauss(0, 0.1) + float(np.random.normal(0, 0.1))
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def resume_and_finish(run_dir: Path, steps: int, reseed_after_load: bool = False) -> nn.Module:
    model, optimizer, scheduler = build()
    with torch.no_grad():  # the trainable weights must come from the checkpoint, not from the seed
        for p in model.parameters():
            if p.requires_grad:
                p.fill_(0.5)
    torch.manual_seed(999), random.seed(999), np.random.seed(999)  # a fresh process has other RNG states
    state = load_checkpoint(latest_checkpoint(run_dir), model, optimizer, scheduler)
    assert state == {"step": steps, "epoch": 0, "samples_seen": 8 * steps, "best": None}
    if reseed_after_load:
        torch.manual_seed(12345)
    train(model, optimizer, scheduler, steps)
    return model


N = 5


@pytest.fixture
def straight_and_half(tmp_path: Path) -> tuple[nn.Module, Path]:
    random.seed(0), np.random.seed(0)
    straight, optimizer, scheduler = build()
    train(straight, optimizer, scheduler, 2 * N)

    random.seed(0), np.random.seed(0)
    model, optimizer, scheduler = build()
    train(model, optimizer, scheduler, N)
    save_checkpoint(tmp_path, N, model, optimizer, scheduler, {"epoch": 0, "samples_seen": 8 * N, "best": None})
    return straight, tmp_path


def test_resume_continues_bit_for_bit(straight_and_half: tuple[nn.Module, Path]) -> None:
    straight, run_dir = straight_and_half
    resumed = resume_and_finish(run_dir, N)
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_resume_without_the_saved_rng_diverges(straight_and_half: tuple[nn.Module, Path]) -> None:
    """The control: dropout and data depend on the RNG, so a wrong RNG state changes the result."""
    straight, run_dir = straight_and_half
    resumed = resume_and_finish(run_dir, N, reseed_after_load=True)
    assert not all(torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters()))


def test_checkpoint_holds_only_trainable_weights_and_leaves_the_rngs_alone(tmp_path: Path) -> None:
    model, optimizer, scheduler = build()
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    path = save_checkpoint(tmp_path, 3, model, optimizer, scheduler, {})
    after = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1])
    assert torch.equal(before[0], after[0]) and before[1] == after[1] and np.array_equal(before[2], after[2])
    assert path == tmp_path / "checkpoints" / "step-3"
    assert sorted(load_file(path / ckpt.WEIGHTS)) == ["3.bias", "3.weight", "5.bias", "5.weight"]
    assert {p.name for p in path.iterdir()} == {
        ckpt.WEIGHTS, ckpt.OPTIMIZER, ckpt.SCHEDULER, ckpt.RNG, ckpt.STATE, ckpt.COMPLETE
    }


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer, scheduler = build()
    first = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"epoch": 0})
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)  # the weights file is already written when this fires
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {"epoch": 0})
    monkeypatch.undo()

    assert not (tmp_path / "checkpoints" / "step-2").exists()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-1"]
    assert latest_checkpoint(tmp_path) == first
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before
    assert load_checkpoint(first, *build())["step"] == 1


def test_leftovers_of_a_killed_save_are_ignored_then_cleaned(tmp_path: Path) -> None:
    model, optimizer, scheduler = build()
    save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})
    root = tmp_path / "checkpoints"
    killed = root / ".tmp-step-2-abcd"  # a process killed mid-save leaves its temp folder
    killed.mkdir()
    (killed / ckpt.COMPLETE).write_text("2\n")
    unfinished = root / "step-3"  # a folder without the marker is not a checkpoint
    unfinished.mkdir()
    (unfinished / ckpt.WEIGHTS).write_bytes(b"partial")

    assert latest_checkpoint(tmp_path) == root / "step-1"
    with pytest.raises(UserError, match="not a complete checkpoint"):
        load_checkpoint(unfinished, model)
    save_checkpoint(tmp_path, 4, model, optimizer, scheduler, {})
    assert not killed.exists()
    assert latest_checkpoint(tmp_path) == root / "step-4"


def test_rotation_keeps_the_newest_and_the_protected(tmp_path: Path) -> None:
    model, optimizer, scheduler = build()
    for step in range(1, 7):
        save_checkpoint(tmp_path, step, model, optimizer, scheduler, {}, keep=2, protect={2})
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 5, 6]
    assert not any(p.name.startswith(".") for p in (tmp_path / "checkpoints").iterdir())


def test_rotation_never_deletes_the_checkpoint_just_written(tmp_path: Path) -> None:
    """A stale step-9 (say, from an abandoned run) is newer by number, yet the new step-2 survives."""
    model, optimizer, scheduler = build()
    save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})
    save_checkpoint(tmp_path, 9, model, optimizer, scheduler, {})
    save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {}, keep=1)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2]


def test_resaving_a_step_replaces_it(tmp_path: Path) -> None:
    model, optimizer, scheduler = build()
    save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"samples_seen": 1})
    save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {"samples_seen": 2})
    assert load_checkpoint(latest_checkpoint(tmp_path), model)["samples_seen"] == 2


def test_loading_into_a_different_model_says_what_to_change(tmp_path: Path) -> None:
    model, optimizer, scheduler = build()
    path = save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})
    other, _, _ = build()
    other[0].requires_grad_(True)  # e.g. the recipe now trains the layer that was frozen
    with pytest.raises(UserError, match=r"missing \['0.bias', '0.weight'\].*same model, method and adapter"):
        load_checkpoint(path, other)


def test_no_checkpoint_yet(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    assert list_checkpoints(tmp_path) == []
