"""PPO (RLHF): GAE and the clipped losses, the run's mechanics with reward functions and with a trained
reward model, and (slow) the reward rising on stories260k."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.methods.ppo.losses import clipped_value_loss, gae, whiten
from tunesmith.methods.shared.policy_losses import clipped_policy_loss
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.tasks import write_task
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import build_trainer, train, trainer_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("ppo") / "base", vocab_size=300)


def ppo_recipe(model: Path, data: Path, out: Path, ppo: dict, name: str = "p", **train: object):
    return recipe_from_dict({
        "name": name, "model": str(model), "method": "ppo", "output": str(out),
        "data": {"train": str(data), "eval": 0.25, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 2, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no", **train},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0}, "ppo": ppo,
    })


def test_gae_with_lambda_one_is_the_reward_to_go_minus_the_value() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.5, 2.0, 0.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3, 0.0], [0.4, 0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = torch.tensor([[1.0, 1.0, 1.0, 0.0], [2.5, 2.0, 0.0, 0.0]])
    assert torch.allclose(advantages, (to_go - values) * mask) and torch.allclose(returns, to_go)
    one_step, _ = gae(rewards, values, mask, gamma=1.0, lam=0.0)  # lambda 0: the TD error
    assert one_step[0].tolist() == pytest.approx([0.2 - 0.1, 0.3 - 0.2, 1.0 - 0.3, 0.0])


def test_whiten_and_clipped_losses() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    white = whiten(torch.tensor([[1.0, 2.0, 99.0], [3.0, 4.0, 5.0]]), mask)
    kept = white[mask.bool()]
    assert kept.mean().item() == pytest.approx(0.0, abs=1e-6) and kept.std().item() == pytest.approx(1.0, abs=1e-5)
    assert white[0, 2] == 0
    old = torch.zeros(1, 2)
    loss, clipped = clipped_policy_loss(torch.tensor([[0.5, -0.5]]), old, torch.tensor([1.0]), clip_eps=0.2)
    assert loss[0].tolist() == pytest.approx([-1.2, -math.exp(-0.5)]) and clipped.tolist() == [[1.0, 0.0]]
    value = clipped_value_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), clip=0.2)
    assert value.item() == pytest.approx(0.5 * 0.8**2), "the clipped prediction is the worse one and counts"


def test_ppo_with_reward_functions_trains_adapter_and_value_head(tiny: Path, tmp_path: Path) -> None:
    ppo = {"rewards": [{"name": "length_penalty", "max_chars": 4}], "max_new_tokens": 6, "iterations": 2}
    recipe = ppo_recipe(tiny, write_task("names", tmp_path / "n.jsonl", 16), tmp_path, ppo, max_steps=3)
    trainer = build_trainer(recipe, overwrite=True)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer_run(trainer)
    steps = [r for r in read_metrics(recipe.run_dir / "metrics.jsonl") if "loss" in r]
    assert len(steps) == 3 and all(math.isfinite(r["loss"]) for r in steps)
    assert steps[0]["kl"] == 0.0, "the sampling policy is the reference before the first update"
    assert steps[0]["clip_ratio"] == 0.0 and steps[1]["clip_ratio"] > 0, "step 2 reuses step 1's rollouts"
    for key in ("reward", "reward/length_penalty", "value_loss", "policy_loss", "completion_length"):
        assert key in steps[0], key
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all("lora_" in name or name.startswith("value_head.") for name in changed)
    assert {"value_head.weight", "value_head.bias"} <= changed
    adapter = recipe.run_dir / "adapter"
    assert not any("value_head" in key for key in load_file(adapter / "adapter_model.safetensors"))
    assert set(load_file(adapter / "scalar_heads.safetensors")) == {"value_head.weight", "value_head.bias"}


def test_ppo_scores_with_a_trained_reward_model(tiny: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Say {w}", "chosen": w, "rejected": f"no {w} at all"}) + "\n"
                             for w in ("Max", "Sue", "Tom", "Ben") * 4))
    reward = recipe_from_dict({
        "name": "rm", "model": str(tiny), "method": "reward", "output": str(tmp_path),
        "data": {"train": str(pairs), "eval": 0.25, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 2, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0},
    })
    train(reward)
    ppo = {"reward_model": str(tmp_path / "rm"), "rewards": ["starts_with"], "max_new_tokens": 6}
    recipe = ppo_recipe(tiny, write_task("names", tmp_path / "n.jsonl", 16), tmp_path, ppo, name="ppo")
    train(recipe)
    records = read_metrics(recipe.run_dir / "metrics.jsonl")
    first = next(r for r in records if "loss" in r)
    assert "reward/reward_model" in first and "reward/starts_with" in first
    assert first["reward_std"] > 0, "a trained reward model tells completions apart"
    assert any("eval_reward/reward_model" in r for r in records)


@pytest.mark.slow
def test_ppo_raises_the_reward_on_the_names_task(stories260k: Path, tmp_path: Path) -> None:
    recipe = recipe_from_dict({
        "name": "p", "model": str(stories260k), "method": "ppo", "output": str(tmp_path),
        "data": {"train": str(REPO / "recipes" / "data" / "names.jsonl"), "eval": 0.1, "template": "plain"},
        "train": {"lr": 5e-3, "max_steps": 30, "batch_size": 32, "max_seq_len": 64, "scheduler": "constant",
                  "warmup_ratio": 0.0},
        "adapter_args": {"r": 8, "alpha": 16, "dropout": 0.0},
        "ppo": {"rewards": ["starts_with"], "max_new_tokens": 6},
    })
    trainer_run(build_trainer(recipe))
    records = read_metrics(recipe.run_dir / "metrics.jsonl")
    rewards = [r["reward"] for r in records if "reward" in r]
    evals = [r["eval_reward"] for r in records if "eval_reward" in r]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(f"train reward: first 5 mean {first:.3f}, last 5 mean {last:.3f}; eval {evals[0]:.3f} -> {evals[-1]:.3f}")
    assert last > first + 0.2
