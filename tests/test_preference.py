"""DPO, ORPO and KTO through the shared loop on a tiny model: metrics, references, data handling, recipes;
(slow) DPO raising held-out preference accuracy and margin on real pairs with stories260k."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tunesmith.data.pairs import as_unpaired, fit
from tunesmith.data.pipeline import prepare_data
from tunesmith.data.types import IGNORE_INDEX, Message, Preference, Sample
from tunesmith.errors import UserError
from tunesmith.methods import METHOD_NAMES, METHODS
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import build_trainer, trainer_run

WORDS = ("cat", "dog", "sun", "tree", "ball", "bird", "fish", "hat")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama and 16 preference pairs whose chosen answers share an easy pattern."""
    root = tmp_path_factory.mktemp("pref")
    pairs = root / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Say {w}", "chosen": f"{w} is good.", "rejected": f"No {w} here"}) + "\n"
                             for w in WORDS * 2))
    return save_tiny("llama", root / "base", vocab_size=300), pairs


def recipe(setup: tuple[Path, Path], out: Path, method: str = "dpo", adapter: str = "lora", **extra: object):
    model, data = setup
    return recipe_from_dict({
        "name": method, "model": str(model), "method": method, "adapter": adapter, "output": str(out),
        "data": {"train": str(data), "eval": 0.25, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 3, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0}, **extra,
    })


def run(r) -> tuple[list[dict], list[dict], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Train; return the train and eval records and the parameters before and after."""
    trainer = build_trainer(r, overwrite=True)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer_run(trainer)
    after = {name: p.detach() for name, p in trainer.model.named_parameters()}
    records = read_metrics(r.run_dir / "metrics.jsonl")
    return [x for x in records if "loss" in x], [x for x in records if "eval_loss" in x], before, after


def test_dpo_starts_at_the_reference_and_learns_the_pairs(setup, tmp_path: Path) -> None:
    trains, evals, before, after = run(recipe(setup, tmp_path))
    assert evals[0]["eval_loss"] == pytest.approx(math.log(2), abs=1e-6), "policy = reference: every pair ties"
    assert evals[0]["eval_margin"] == 0 and evals[0]["eval_accuracy"] == 0
    assert trains[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert evals[-1]["eval_margin"] > 0 and evals[-1]["eval_accuracy"] == 1.0 and evals[-1]["eval_loss"] < math.log(2)
    for key in ("rewards/chosen", "rewards/rejected", "margin", "accuracy"):
        assert key in trains[-1] and f"eval_{key}" in evals[-1]
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert changed and all("lora_" in name for name in changed)


def test_full_fine_tuning_reference_precomputed_equals_frozen_copy(setup, tmp_path: Path) -> None:
    copy, copy_evals, _, _ = run(recipe(setup, tmp_path / "a", adapter="full"))
    pre, pre_evals, _, _ = run(recipe(setup, tmp_path / "b", adapter="full", dpo={"precompute_ref": True}))
    assert [r["loss"] for r in pre] == pytest.approx([r["loss"] for r in copy], abs=1e-5)
    assert pre_evals[-1]["eval_margin"] == pytest.approx(copy_evals[-1]["eval_margin"], abs=1e-5)
    assert copy_evals[-1]["eval_margin"] > 0


@pytest.mark.parametrize("dpo", [{"loss": "ipo", "beta": 0.5}, {"loss": "hinge"}, {"loss": "simpo", "beta": 2.0},
                                 {"reference_free": True, "label_smoothing": 0.1}])
def test_dpo_variants_train(setup, tmp_path: Path, dpo: dict) -> None:
    trains, evals, _, _ = run(recipe(setup, tmp_path, dpo=dpo))
    assert all(math.isfinite(r["loss"]) for r in trains)
    assert trains[-1]["loss"] < trains[0]["loss"]
    assert evals[-1]["eval_margin"] > evals[0]["eval_margin"]


def test_orpo_trains_without_a_reference(setup, tmp_path: Path) -> None:
    trains, evals, _, _ = run(recipe(setup, tmp_path, method="orpo", orpo={"beta": 0.5}))
    assert evals[0]["eval_margin"] != 0, "ORPO's rewards are the policy's own log-probs, not ratios to a reference"
    assert trains[-1]["nll"] < trains[0]["nll"] and evals[-1]["eval_loss"] < evals[0]["eval_loss"]


def test_kto_splits_preference_rows_into_judged_answers(setup, tmp_path: Path) -> None:
    trains, evals, _, _ = run(recipe(setup, tmp_path, method="kto"))
    assert trains[0]["units"] == 4 and trains[0]["kl"] == 0.0
    assert evals[-1]["eval_rewards/chosen"] > evals[-1]["eval_rewards/rejected"]
    pair = Preference((Message("user", "q"),), (Message("assistant", "good"),), (Message("assistant", "bad"),))
    answers = as_unpaired([pair])
    assert [(a.completion[0].content, a.desirable) for a in answers] == [("good", True), ("bad", False)]


def test_every_method_has_an_objective() -> None:
    assert len(set(METHOD_NAMES)) == len(METHODS)
    for method in METHODS:
        assert callable(method.objective()), method.name


def test_methods_refuse_data_of_the_wrong_format(setup, tmp_path: Path) -> None:
    model, _ = setup
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Add 1 and 2.", "answer": "3"}) + "\n")
    r = recipe((model, prompts), tmp_path)
    with pytest.raises(UserError, match="method: dpo cannot train on .* needs preference"):
        prepare_data(r, load_tokenizer(str(model)))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"method": "sft", "dpo": {}}, "dpo: this block configures method: dpo"),
        ({"method": "dpo", "kto": {}}, "kto: this block configures method: kto"),
        ({"method": "dpo", "dpo": {"loss": "hinge", "label_smoothing": 0.1}}, "label_smoothing applies to dpo.loss sigmoid"),
        ({"method": "dpo", "dpo": {"loss": "simpo", "precompute_ref": True}}, "uses no reference model"),
        ({"method": "dpo", "dpo": {"loss": "dpo"}}, "dpo.loss"),
        ({"method": "kto", "train": {"batch_size": 1}}, "set train.batch_size: 2 or more"),
        ({"method": "grpo"}, "method: grpo needs reward functions"),
        ({"method": "grpo", "grpo": {"rewards": ["exact_mach"]}}, "did you mean 'exact_match'"),
        ({"method": "grpo", "grpo": {"rewards": [{"name": "regex"}]}}, "regex reward needs a pattern"),
        ({"method": "ppo", "ppo": {}}, "method: ppo needs a reward"),
    ],
)
def test_alignment_recipe_mistakes_say_what_to_change(extra: dict, message: str) -> None:
    raw = {"name": "x", "model": "m", "data": {"train": "t.jsonl"}, **extra}
    with pytest.raises(UserError, match=message):
        recipe_from_dict(raw)


def test_long_sequences_keep_the_end_of_the_prompt_and_the_start_of_the_answer() -> None:
    ids = list(range(100, 130))  # 20 prompt tokens, 8 answer tokens, then 2 after the answer
    labels = [IGNORE_INDEX] * 20 + ids[20:28] + [IGNORE_INDEX] * 2
    short = fit(Sample(ids, labels), 16)
    assert short.input_ids == ids[12:28] and short.truncated, "the whole answer fits: the prompt loses its start"
    answer_heavy = fit(Sample(ids[:28], [IGNORE_INDEX] * 4 + ids[4:28]), 10)
    assert answer_heavy.input_ids == ids[:10] and answer_heavy.labels[:4] == [IGNORE_INDEX] * 4
    whole = fit(Sample(ids, labels), 64)
    assert whole.input_ids == ids[:28] and not whole.truncated, "tokens after the answer are dropped"


@pytest.mark.slow
@pytest.mark.parametrize("file", ["preference_dpo_en_demo_300.jsonl", "preference_hh_harmless_base_test_500.jsonl"])
def test_dpo_raises_held_out_preference_on_real_pairs(stories260k: Path, shared_data: Path, tmp_path: Path, file: str) -> None:
    """At step 0 policy = reference, so every held-out pair ties (margin 0, loss log 2, accuracy 0); after 50
    steps most held-out pairs lean the right way (accuracy above one half) and so does their mean margin. (lr 1e-3 over-fits here: train margin up, held-out loss up.)"""
    r = recipe_from_dict({
        "name": "dpo", "model": str(stories260k), "method": "dpo", "output": str(tmp_path),
        "data": {"train": str(shared_data / file), "eval": 0.2, "template": "plain", "on_bad_row": "skip"},
        "train": {"lr": 1e-4, "max_steps": 50, "batch_size": 4, "max_seq_len": 256},
        "dpo": {"beta": 0.1},
    })
    trainer_run(build_trainer(r))
    evals = [x for x in read_metrics(r.run_dir / "metrics.jsonl") if "eval_loss" in x]
    start, end = evals[0], evals[-1]
    print(f"{file}: held-out accuracy {start['eval_accuracy']:.3f} -> {end['eval_accuracy']:.3f}, "
          f"margin {start['eval_margin']:.4f} -> {end['eval_margin']:.4f}, loss {start['eval_loss']:.4f} -> {end['eval_loss']:.4f}")
    assert end["eval_margin"] > start["eval_margin"] and end["eval_loss"] < start["eval_loss"]
    assert start["eval_accuracy"] == 0.0, "policy = reference: no held-out pair is won yet (ties count as lost)"
    assert end["eval_accuracy"] > 0.5, "most held-out pairs now prefer the chosen answer"
