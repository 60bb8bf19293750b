"""`method: reward`: the scalar head, the run folder it leaves, loading it back; (slow) held-out pair
accuracy above chance on real preference data with stories260k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.data.types import Message, Prompt
from tunesmith.errors import UserError
from tunesmith.methods.reward.objective import RewardModel
from tunesmith.models.heads import attach_head, last_token_scores
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.tiny import save_tiny, tiny_model
from tunesmith.train.loop import train

WORDS = ("Max", "Sue", "Tom", "Ben", "Lily", "Sam")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("rm") / "base", vocab_size=300)


def reward_recipe(model: Path, data: Path, out: Path, adapter: str = "lora", **train_args: object):
    return recipe_from_dict({
        "name": "rm", "model": str(model), "method": "reward", "adapter": adapter, "output": str(out),
        "data": {"train": str(data), "eval": 0.25, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 6, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no", **train_args},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0},
    })


def test_scores_are_read_at_each_sequence_last_real_token() -> None:
    model = tiny_model("llama", 50)
    head = attach_head(model, "reward_head")
    assert head.weight.abs().sum() == 0, "a fresh head scores everything 0: no preference before training"
    torch.nn.init.normal_(head.weight)
    states = torch.randn(2, 5, 64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    scores = last_token_scores(head, states, mask)
    assert torch.allclose(scores, torch.stack([head(states[0, 2]), head(states[1, 4])]).squeeze(-1))
    assert "reward_head.weight" in dict(model.named_parameters())


def test_reward_run_learns_pairs_and_saves_a_loadable_head(tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Name a friend of {w}.", "chosen": w, "rejected": "I do not know at all"})
                            + "\n" for w in WORDS * 3))
    recipe = reward_recipe(tiny, data, tmp_path)
    train(recipe)
    records = read_metrics(recipe.run_dir / "metrics.jsonl")
    evals = [r for r in records if "eval_loss" in r]
    assert evals[0]["eval_accuracy"] == 0 and evals[0]["eval_margin"] == 0, "an untrained head ties every pair"
    assert evals[-1]["eval_accuracy"] == 1.0 and evals[-1]["eval_margin"] > 0
    adapter = recipe.run_dir / "adapter"
    assert not any("reward_head" in key for key in load_file(adapter / "adapter_model.safetensors"))
    assert set(load_file(adapter / "scalar_heads.safetensors")) == {"reward_head.weight", "reward_head.bias"}
    scorer = RewardModel.load(recipe.run_dir)
    rows = [Prompt((Message("user", "Name a friend of Sue."),))] * 2
    good, bad = scorer.score(rows, ["Sue", "I do not know at all"])
    assert good > bad
    with pytest.raises(UserError, match="not the run folder of a method: reward run"):
        RewardModel.load(tmp_path / "nope")


def test_full_fine_tuning_keeps_the_head_out_of_the_model_folder(tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Hi {w}", "chosen": w, "rejected": "no"}) + "\n" for w in WORDS))
    recipe = reward_recipe(tiny, data, tmp_path, adapter="full", max_steps=1)
    train(recipe)
    folder = recipe.run_dir / "model"
    assert not any("reward_head" in key for key in load_file(folder / "model.safetensors"))
    assert (folder / "scalar_heads.safetensors").is_file()
    assert len(RewardModel.load(recipe.run_dir).score([Prompt((Message("user", "Hi"),))], ["Max"])) == 1


@pytest.mark.slow
@pytest.mark.parametrize("file", ["preference_dpo_en_demo_300.jsonl", "preference_hh_harmless_base_test_500.jsonl"])
def test_reward_model_beats_chance_on_held_out_pairs(stories260k: Path, shared_data: Path, tmp_path: Path, file: str) -> None:
    recipe = recipe_from_dict({
        "name": "rm", "model": str(stories260k), "method": "reward", "output": str(tmp_path),
        "data": {"train": str(shared_data / file), "eval": 0.2, "template": "plain", "on_bad_row": "skip"},
        "train": {"lr": 3e-4, "epochs": 1, "batch_size": 8, "max_seq_len": 256},
    })
    train(recipe)
    evals = [r for r in read_metrics(recipe.run_dir / "metrics.jsonl") if "eval_accuracy" in r]
    print(f"{file}: held-out pair accuracy {evals[0]['eval_accuracy']:.3f} -> {evals[-1]['eval_accuracy']:.3f}")
    assert evals[-1]["eval_accuracy"] > 0.5
