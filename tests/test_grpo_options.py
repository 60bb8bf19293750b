"""GRPO's options in the objective and the loop: the step's advantages, dynamic sampling's dropped groups
and their counter, masking of truncated completions; and (slow) the reward rising on the names task under
DAPO, Dr. GRPO and GSPO as it does under GRPO."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.test_grpo import REPO, grpo_recipe, tiny, user_reward  # noqa: F401  (tiny: fixture)
from tunesmith.adapters.build import apply_adapter
from tunesmith.data.pipeline import prepare_data
from tunesmith.methods.grpo.losses import group_advantages
from tunesmith.methods.grpo.objective import Grpo
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.tasks import write_task
from tunesmith.train.loop import build_trainer, trainer_run


def objective(tiny: Path, tmp_path: Path, **options: object) -> Grpo:
    grpo = {"rewards": [user_reward(tmp_path)], "group_size": 4, "max_new_tokens": 6, **options}
    recipe = grpo_recipe(tiny, write_task("names", tmp_path / "n.jsonl", 16), tmp_path, grpo)
    tokenizer = load_tokenizer(str(tiny))
    model = apply_adapter(load_model(str(tiny), dtype="fp32"), "lora", recipe.adapter_args)
    return Grpo(recipe, prepare_data(recipe, tokenizer), tokenizer, model)


def micro_batch(rewards: list[float], truncated: list[bool], lengths: list[int]) -> dict[str, torch.Tensor]:
    """What a rollout hands the step: scores (one reward term), which completions lack an eos, their masks."""
    mask = (torch.arange(6) < torch.tensor(lengths).unsqueeze(1)).long()
    return {"scores": torch.tensor(rewards, dtype=torch.float32).unsqueeze(1), "truncated": torch.tensor(truncated), "completion_mask": mask}


def test_the_step_scales_advantages_drops_flat_groups_and_masks_truncated_ones(tiny: Path, tmp_path: Path) -> None:
    grpo = objective(tiny, tmp_path, dynamic_sampling=True, mask_truncated_completions=True, scale_rewards="batch")
    batches = [micro_batch([1, 0, 0, 1, 2, 2, 2, 2], [False, True, False, False] * 2, [6, 6, 3, 2] * 2),
               micro_batch([0, 0, 0, 0, 0.5, 1, 0, 3], [False] * 8, [1, 2, 3, 4] * 2)]
    grpo._finish_step(batches)
    rewards = torch.cat([b["scores"][:, 0] for b in batches])
    advantages = torch.cat([b["advantages"] for b in batches])
    assert torch.allclose(advantages, group_advantages(rewards, 4, "batch")), "the std is the whole step's"
    assert batches[0]["kept"].tolist() == [1.0] * 4 + [0.0] * 4 and batches[1]["kept"].tolist() == [0.0] * 4 + [1.0] * 4
    assert [float(b["dropped_groups"]) for b in batches] == [1.0, 1.0]
    assert batches[0]["loss_mask"].sum(-1).tolist() == [6, 0, 3, 2, 0, 0, 0, 0], "truncated and dropped: no loss"
    assert batches[0]["step_counts"].tolist() == [16.0, 8.0, 11.0 + 10.0]  # sampled, kept, loss tokens
    assert [grpo.units(b) for b in batches] == [4, 4]


def test_without_the_options_every_completion_trains(tiny: Path, tmp_path: Path) -> None:
    grpo = objective(tiny, tmp_path)
    batches = [micro_batch([1, 0, 0, 1, 2, 2, 2, 2], [True] * 8, [6] * 8)]
    grpo._finish_step(batches)
    assert torch.equal(batches[0]["loss_mask"], batches[0]["completion_mask"]) and grpo.units(batches[0]) == 8
    assert torch.allclose(batches[0]["advantages"], group_advantages(batches[0]["scores"][:, 0], 4))


def run(tiny: Path, tmp_path: Path, grpo: dict) -> list[dict]:
    recipe = grpo_recipe(tiny, write_task("names", tmp_path / "n.jsonl", 16), tmp_path,
                         {"group_size": 4, "max_new_tokens": 6, **grpo})
    trainer = build_trainer(recipe, overwrite=True)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if "lora_" in name}
    trainer_run(trainer)
    changed = any(not torch.equal(p, before[name]) for name, p in trainer.model.named_parameters() if name in before)
    return [{**r, "changed": changed} for r in read_metrics(recipe.run_dir / "metrics.jsonl") if "loss" in r]


def test_a_run_whose_groups_all_tie_counts_them_dropped_and_trains_on_nothing(tiny: Path, tmp_path: Path) -> None:
    """A reward that is 0 for every completion leaves no group with a gradient."""
    steps = run(tiny, tmp_path, {"rewards": [{"name": "length_penalty", "max_chars": 1000}], "dynamic_sampling": True,
                                 "loss_type": "dapo"})
    assert [r["dropped_groups"] for r in steps] == [2.0, 2.0]  # batch_size 2 prompts a step
    assert all(r["loss"] == 0.0 and r["units"] == 0 and r["reward"] == 0.0 for r in steps)


def test_a_run_with_the_modern_options_trains(tiny: Path, tmp_path: Path) -> None:
    steps = run(tiny, tmp_path, {"rewards": [user_reward(tmp_path)], "loss_type": "dr_grpo", "epsilon_high": 0.28,
                                 "scale_rewards": "none", "mask_truncated_completions": True, "dynamic_sampling": True,
                                 "iterations": 2, "beta": 0.1})
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps) and steps[0]["changed"]
    assert all("dropped_groups" in r and "kl" in r and r["completion_length"] > 0 for r in steps)


def names_task_rewards(stories260k: Path, tmp_path: Path, options: dict) -> tuple[list[float], list[float]]:
    """Train rewards per step and eval rewards of 15 steps on the shipped names task (test_grpo's slow recipe)."""
    recipe = recipe_from_dict({
        "name": "g", "model": str(stories260k), "method": "grpo", "output": str(tmp_path),
        "data": {"train": str(REPO / "recipes" / "data" / "names.jsonl"), "eval": 0.1, "template": "plain"},
        "train": {"lr": 5e-3, "max_steps": 15, "batch_size": 8, "max_seq_len": 64, "scheduler": "constant",
                  "warmup_ratio": 0.0},
        "adapter_args": {"r": 8, "alpha": 16, "dropout": 0.0},
        "grpo": {"rewards": ["starts_with"], "group_size": 8, "max_new_tokens": 6, **options},
    })
    trainer_run(build_trainer(recipe))
    records = read_metrics(recipe.run_dir / "metrics.jsonl")
    return [r["reward"] for r in records if "reward" in r], [r["eval_reward"] for r in records if "eval_reward" in r]


VARIANTS = {  # two steps on each rollout, so that the ratio leaves 1 and the clips and GSPO's ratio act
    "dapo": {"loss_type": "dapo", "epsilon_high": 0.28, "dynamic_sampling": True, "iterations": 2},  # 6 tokens: most are truncated
    "dr_grpo": {"loss_type": "dr_grpo", "scale_rewards": "none"},
    "gspo": {"importance_sampling_level": "sequence", "iterations": 2},
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_variants_raise_the_reward_on_the_names_task(variant: str, stories260k: Path, tmp_path: Path) -> None:
    """As test_grpo's slow test for grpo: stories260k repeats the name ~8% of the time, 15 steps lift that."""
    rewards, evals = names_task_rewards(stories260k, tmp_path, VARIANTS[variant])
    print(f"{variant}: train reward first {rewards[0]:.3f}, last 5 mean {sum(rewards[-5:]) / 5:.3f}; "
          f"eval {evals[0]:.3f} -> {evals[-1]:.3f}")
    assert sum(rewards[-5:]) / 5 > rewards[0] + 0.3
    assert evals[-1] > evals[0]


def test_advantages_and_truncation_masks_equal_trls(tiny: Path, tmp_path: Path) -> None:
    """TRL's own `_generate_and_score_completions` (a real GRPOTrainer on the tiny model, its eos made likely
    so that some completions end and some are cut off) against ours on its completions and rewards."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from tunesmith.methods.grpo.losses import truncated
    from tunesmith.methods.shared.rollout import until_eos

    tokenizer = load_tokenizer(str(tiny))
    eos = tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight[eos] = 0.2 * torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    values = [1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 0.5, 1.5, 0.0, 3.0, 0.0, 0.0, 0.0, 1.0]
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, reward_funcs=lambda completions, **kw: values[:len(completions)],
        train_dataset=Dataset.from_list([{"prompt": "x"}] * 16),
        args=GRPOConfig(output_dir=str(tmp_path / "trl"), report_to="none", bf16=False, num_generations=4, beta=0.0,
                        per_device_train_batch_size=16, max_completion_length=6, mask_truncated_completions=True))
    trainer.model.train()
    prompts = [{"prompt": p} for p in ("a", "b", "c", "d") for _ in range(4)]
    for scale in ("group", "batch", "none"):
        trainer.scale_rewards = scale
        torch.manual_seed(0)
        out = trainer._generate_and_score_completions(prompts)
        ours = group_advantages(torch.tensor(values), 4, scale)
        assert torch.allclose(ours, out["advantages"].cpu(), atol=1e-6, rtol=0), (scale, ours, out["advantages"])
    ids = out["completion_ids"].cpu()
    cut = truncated(ids, eos)
    assert 0 < int(cut.sum()) < len(values), "the check needs completions that end and ones that are cut off"
    assert torch.equal(until_eos(ids, eos) * (~cut).long().unsqueeze(1), out["completion_mask"].cpu().long())
