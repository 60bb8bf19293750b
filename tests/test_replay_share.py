"""Replay's share of trained tokens, measured on the micro-batches the loop actually trains on, not read from
the mixer's own counters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.test_train import tiny_setup  # noqa: F401  (fixture)
from tunesmith.data.types import IGNORE_INDEX
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.train.loop import build_trainer


def _trained_tokens_by_source(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(task, replay) trained tokens of a packed micro-batch. Samples are told apart by their positions
    restarting at 0; a replay sample (raw text) trains every token after its first, a task sample (a chat)
    never trains its prompt."""
    task = replay = 0
    for labels, positions in zip(batch["labels"].tolist(), batch["position_ids"].tolist()):
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        for a, b in zip(starts, starts[1:]):
            trained = sum(label != IGNORE_INDEX for label in labels[a + 1:b])
            if trained == b - a - 1 and trained > 0:
                replay += trained
            else:
                task += trained
    return task, replay


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_replay_share_of_the_trained_batches_is_the_asked_ratio(tiny_setup, tmp_path: Path, ratio: float) -> None:
    general = tmp_path / "general.txt"
    general.write_text("\n".join(f"story number {i} about a cat and a dog in the sun" for i in range(200)))
    model, data = tiny_setup
    recipe = recipe_from_dict({
        "name": "replay", "model": str(model), "adapter": "full", "output": str(tmp_path),
        "data": {"train": str(data), "eval": 0.0, "template": "plain", "replay": {"train": str(general), "ratio": ratio}},
        "train": {"epochs": 1, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"},
    })
    trainer = build_trainer(recipe)
    task = replay = 0
    for step in range(trainer.objective.steps):
        for batch in trainer.objective.step_batches(step, trainer.model):
            t, r = _trained_tokens_by_source(batch)
            task, replay = task + t, replay + r
    assert task > 0 and replay > 0
    assert replay / (task + replay) == pytest.approx(ratio, abs=0.02)
