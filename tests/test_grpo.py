"""GRPO: parity of the loss with TRL 1.16, rollout mechanics, reward functions, the verifiable task, and
(slow) the reward rising on stories260k."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from tunesmith.adapters.build import apply_adapter
from tunesmith.data.pipeline import prepare_data
from tunesmith.data.types import IGNORE_INDEX, Message, Prompt
from tunesmith.errors import UserError
from tunesmith.methods.grpo.losses import group_advantages
from tunesmith.methods.grpo.objective import Grpo
from tunesmith.methods.rollout_spec import RewardFnSpec
from tunesmith.methods.shared.rewards import check_answer_field, load_rewards, score
from tunesmith.methods.shared.rollout import rollout_batch, until_eos
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.recipe.user_code import RECORDED, UserCode
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.tasks import name_rows, write_task
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import build_trainer, trainer_run

REPO = Path(__file__).resolve().parents[1]

# A reward with spread on a random tiny model: the share of letters among the completion's characters.
USER_REWARD = '''
def letters(prompts, completions, answer, **fields):
    assert len(prompts) == len(completions) == len(answer)
    return [sum(ch.isalpha() for ch in c) / max(len(c), 1) for c in completions]
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("grpo") / "base", vocab_size=300)


def grpo_recipe(model: Path, data: Path, out: Path, grpo: dict, held_out: float = 0.25, **train: object):
    """The recipe; its custom rewards come from the `my_rewards.py` that user_reward() wrote into `out`."""
    files = [out / "my_rewards.py"] if (out / "my_rewards.py").is_file() else []
    return recipe_from_dict({
        "name": "g", "model": str(model), "method": "grpo", "output": str(out),
        "data": {"train": str(data), "eval": held_out, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 2, "batch_size": 2, "max_seq_len": 64, "mixed_precision": "no", **train},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0}, "grpo": grpo,
    }, user_code=UserCode.from_files(files))


def user_reward(tmp_path: Path) -> str:
    """Writes my_rewards.py (as if given with --rewards-file) and returns the name the recipe uses for it."""
    (tmp_path / "my_rewards.py").write_text(USER_REWARD)
    return "my_rewards:letters"


# ---- parity with TRL ---------------------------------------------------------------------------------


def test_grpo_loss_equals_trl(tiny: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    grpo = {"rewards": ["numeric_match"], "group_size": 4, "max_new_tokens": 6, "beta": 0.04, "iterations": 2}
    recipe = grpo_recipe(tiny, write_task("add", tmp_path / "add.jsonl", 8), tmp_path, grpo, held_out=0.0)
    tokenizer = load_tokenizer(str(tiny))
    data = prepare_data(recipe, tokenizer)
    torch.manual_seed(0)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32), processing_class=tokenizer,
        reward_funcs=lambda completions, **kw: [0.0] * len(completions), train_dataset=Dataset.from_list([{"prompt": "x"}] * 8),
        args=GRPOConfig(output_dir=str(tmp_path / "trl"), report_to="none", bf16=False, loss_type="grpo", beta=0.04,
                        num_generations=4, per_device_train_batch_size=8, max_completion_length=6, epsilon=0.2),
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False),
    )
    model = trainer.model
    ours = Grpo(recipe, data, tokenizer, model)
    batch = ours.step_batches(0, model)[0]  # sampled, with old (sampling-time) and reference log-probs
    batch["advantages"] = torch.randn(batch["advantages"].shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # an update after sampling, as on the second step on these rollouts
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.3 * torch.randn_like(param))
    width = batch["input_ids"].shape[1] - batch["completion_mask"].shape[1]
    inputs = {
        "prompt_ids": batch["input_ids"][:, :width], "prompt_mask": batch["attention_mask"][:, :width],
        "completion_ids": batch["input_ids"][:, width:], "completion_mask": batch["completion_mask"],
        "advantages": batch["advantages"], "old_per_token_logps": batch["old_logps"],
        "ref_per_token_logps": batch["ref_logps"],
    }
    model.eval()  # TRL's eval mode divides by no accumulation steps
    loss_sum, metrics = ours.loss_sum(model, batch)
    theirs = trainer._compute_loss(model, inputs)
    n = batch["input_ids"].shape[0]
    assert loss_sum.item() / n == pytest.approx(theirs.item(), abs=1e-5)
    assert metrics["clip_ratio"] > 0 and metrics["kl"] > 0, "the check should exercise the clip and the KL term"


# ---- mechanics ------------------------------------------------------------------------------------


def test_group_advantages_are_normalised_within_each_group() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.5, 1.5, 2.5, 3.5])
    adv = group_advantages(rewards, 4).view(3, 4)
    assert torch.allclose(adv.mean(dim=1), torch.zeros(3), atol=1e-6)
    assert adv[0].std().item() == pytest.approx(1.0, abs=1e-3) and adv[2].std().item() == pytest.approx(1.0, abs=1e-3)
    assert torch.equal(adv[1], torch.zeros(4)), "a group whose completions all score the same teaches nothing"


def test_a_completion_ends_with_its_first_eos() -> None:
    ids = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 2, 2, 2]])
    assert until_eos(ids, eos=2).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    batch = rollout_batch(torch.tensor([[0, 9], [8, 9]]), torch.tensor([[0, 1], [1, 1]]), ids[:2], until_eos(ids[:2], 2))
    assert batch["position_ids"].tolist() == [[0, 0, 1, 2, 2, 2], [0, 1, 2, 3, 4, 5]]
    assert batch["labels"].tolist()[0] == [IGNORE_INDEX, IGNORE_INDEX, 5, 2, IGNORE_INDEX, IGNORE_INDEX]


def test_rollouts_group_completions_per_prompt_and_reuse_them_for_iterations(tiny: Path, tmp_path: Path) -> None:
    grpo = {"rewards": [user_reward(tmp_path)], "group_size": 4, "max_new_tokens": 6, "iterations": 2}
    recipe = grpo_recipe(tiny, write_task("names", tmp_path / "n.jsonl", 16), tmp_path, grpo, max_steps=3)
    tokenizer = load_tokenizer(str(tiny))
    model = apply_adapter(load_model(str(tiny), dtype="fp32"), "lora", recipe.adapter_args)
    objective = Grpo(recipe, prepare_data(recipe, tokenizer), tokenizer, model)
    assert objective.steps == 3
    first = objective.step_batches(0, model)
    batch = first[0]
    assert batch["input_ids"].shape[0] == 2 * 4 and batch["completion_mask"].shape[1] <= 6
    prompts = batch["input_ids"][:, : batch["input_ids"].shape[1] - batch["completion_mask"].shape[1]]
    assert all(torch.equal(prompts[g * 4], prompts[g * 4 + k]) for g in range(2) for k in range(4))
    assert torch.allclose(batch["advantages"].view(2, 4).mean(dim=1), torch.zeros(2), atol=1e-5)
    assert objective.step_batches(1, model) is first, "step 2 trains on step 1's rollouts again"
    assert objective.step_batches(2, model) is not first


def test_grpo_run_changes_only_the_adapter_and_starts_at_zero_kl(tiny: Path, tmp_path: Path, capsys) -> None:
    grpo = {"rewards": [user_reward(tmp_path), {"name": "length_penalty", "max_chars": 4, "weight": 0.5}],
            "group_size": 4, "max_new_tokens": 6, "beta": 0.1}
    recipe = grpo_recipe(tiny, write_task("names", tmp_path / "n.jsonl", 16), tmp_path, grpo)
    trainer = build_trainer(recipe, overwrite=True)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer_run(trainer)
    records = read_metrics(recipe.run_dir / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps)
    assert steps[0]["kl"] == 0.0, "policy and reference are the same model before the first update"
    assert steps[1]["kl"] > 0
    for key in ("reward", "reward_std", "reward/length_penalty", "reward/length_penalty_std", "completion_length"):
        assert key in steps[0], key
    evals = [r for r in records if "eval_reward" in r]
    assert [r["step"] for r in evals] == [0, 2] and evals[0]["eval_loss"] == -evals[0]["eval_reward"]
    summary = f"held-out reward: {evals[0]['eval_reward']:.4f} -> {evals[-1]['eval_reward']:.4f}"
    assert summary in capsys.readouterr().err  # the metric named for what it is, not as a loss
    changed = {name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all("lora_" in name for name in changed)
    assert (recipe.run_dir / "adapter" / "adapter_model.safetensors").is_file()


# ---- reward functions -------------------------------------------------------------------------------


def rows(*answers: str) -> list[Prompt]:
    return [Prompt((Message("user", "q"),), {"answer": a}) for a in answers]


@pytest.mark.parametrize(
    ("name", "completion", "answer", "expected"),
    [
        ("exact_match", " Paris.\nThat is all", "paris", 1.0),
        ("exact_match", "Paris is nice", "Paris", 0.0),
        ("starts_with", "Sue! She ran", "Sue", 1.0),
        ("starts_with", "Suey ran", "Sue", 0.0),
        ("numeric_match", "3 + 4 = 7", "7", 1.0),
        ("numeric_match", "I think 12 #### 1,234", "so #### 1234", 1.0),
        ("numeric_match", "the answer is 8", "Natalia sold ... #### 7", 0.0),
        ("numeric_match", "no number", "7", 0.0),
    ],
)
def test_answer_rewards(name: str, completion: str, answer: str, expected: float) -> None:
    terms = load_rewards([RewardFnSpec(name=name)], "answer")
    assert score(terms, rows(answer), [completion]).item() == expected


def test_format_and_length_rewards() -> None:
    terms = load_rewards([RewardFnSpec(name="regex", pattern=r"####\s*\d+$"),
                          RewardFnSpec(name="length_penalty", max_chars=10)], "answer")
    got = score(terms, rows("1", "1"), ["so #### 42", "a" * 25])
    assert got.tolist() == [[1.0, 0.0], [0.0, -1.5]]


def user_spec(name: str, files: list[Path], **options: object) -> RewardFnSpec:
    return RewardFnSpec.model_validate({"name": name, **options}, context={"user_code": UserCode.from_files(files)})


def test_user_functions_load_from_the_command_lines_file(tmp_path: Path) -> None:
    (tmp_path / "my_rewards.py").write_text(USER_REWARD)
    for name in ("my_rewards:letters", "letters"):
        terms = load_rewards([user_spec(name, [tmp_path / "my_rewards.py"], weight=2.0)], "answer")
        assert score(terms, rows("x", "y"), ["ab", "a1"]).tolist() == [[1.0], [0.5]]


def test_a_recipe_cannot_name_any_module_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mypkg_rewards.py").write_text(USER_REWARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("os:getcwd", "mypkg_rewards:letters", f"{tmp_path / 'mypkg_rewards.py'}:letters"):
        raw = {"name": "r", "model": "m", "method": "grpo", "data": {"train": "t"}, "grpo": {"rewards": [name]}}
        with pytest.raises(UserError) as err:
            recipe_from_dict(raw)
        message = str(err.value)
        assert f"grpo.rewards: unknown reward '{name}'" in message, message
        assert "exact_match, starts_with" in message and "--rewards-file" in message
    assert "mypkg_rewards" not in sys.modules


def test_unknown_rewards_suggest_the_closest_name(tmp_path: Path) -> None:
    (tmp_path / "my_rewards.py").write_text(USER_REWARD)
    with pytest.raises(ValueError, match="did you mean 'exact_match'"):
        user_spec("exact_mach", [])
    with pytest.raises(ValueError, match="did you mean 'my_rewards:letters'.*define: my_rewards:letters"):
        user_spec("my_rewards:leters", [tmp_path / "my_rewards.py"])
    with pytest.raises(UserError, match="not a Python file"):
        UserCode.from_files([tmp_path / "absent.py"])


def test_a_recorded_name_is_kept_but_never_runs() -> None:
    spec = RewardFnSpec.model_validate({"name": "os:getcwd"}, context={"user_code": RECORDED})
    with pytest.raises(UserError, match="pass its file with --rewards-file"):
        load_rewards([spec], "answer")


def test_reward_mistakes_are_user_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def short(prompts, completions, **kw):\n    return [1.0]\nmissing = 3\n")
    with pytest.raises(UserError, match="one float per completion"):
        score(load_rewards([user_spec("bad:short", [bad])], "answer"), rows("a", "b"), ["x", "y"])
    with pytest.raises(UserError, match="has no function 'missing'"):
        load_rewards([user_spec("bad:missing", [bad])], "answer")
    with pytest.raises(UserError, match="set reward_field"):
        check_answer_field(load_rewards([RewardFnSpec(name="exact_match")], "solution"), rows("a"), "solution")


def test_grpo_on_the_wrong_data_format_says_what_it_needs(tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    recipe = grpo_recipe(tiny, data, tmp_path, {"rewards": ["exact_match"]})
    with pytest.raises(UserError, match="needs prompt"):
        prepare_data(recipe, load_tokenizer(str(tiny)))


# ---- the verifiable task ------------------------------------------------------------------------------


def test_task_rows_are_seeded_and_the_shipped_file_is_the_generators() -> None:
    assert name_rows(5, seed=1) == name_rows(5, seed=1) != name_rows(5, seed=2)
    assert all(row["prompt"] == f"Repeat the name: {row['answer']}" for row in name_rows(20))
    shipped = REPO / "recipes" / "data" / "names.jsonl"
    assert [json.loads(line) for line in shipped.read_text().splitlines()] == name_rows(200, seed=0)


@pytest.mark.slow
def test_grpo_raises_the_reward_on_the_names_task(stories260k: Path, tmp_path: Path) -> None:
    """stories260k answers "Repeat the name: Sue" with the name ~8% of the time; 15 GRPO steps lift that."""
    recipe = recipe_from_dict({
        "name": "g", "model": str(stories260k), "method": "grpo", "output": str(tmp_path),
        "data": {"train": str(REPO / "recipes" / "data" / "names.jsonl"), "eval": 0.1, "template": "plain"},
        "train": {"lr": 5e-3, "max_steps": 15, "batch_size": 8, "max_seq_len": 64, "scheduler": "constant",
                  "warmup_ratio": 0.0},
        "adapter_args": {"r": 8, "alpha": 16, "dropout": 0.0},
        "grpo": {"rewards": ["starts_with"], "group_size": 8, "max_new_tokens": 6},
    })
    trainer_run(build_trainer(recipe))
    records = read_metrics(recipe.run_dir / "metrics.jsonl")
    rewards = [r["reward"] for r in records if "reward" in r]
    evals = [r["eval_reward"] for r in records if "eval_reward" in r]
    print(f"train reward: first {rewards[0]:.3f}, last 5 mean {sum(rewards[-5:]) / 5:.3f}; eval {evals[0]:.3f} -> {evals[-1]:.3f}")
    assert sum(rewards[-5:]) / 5 > rewards[0] + 0.3
    assert evals[-1] > evals[0]
