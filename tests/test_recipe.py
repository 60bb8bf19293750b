"""The recipe contract: validation, overrides, method-aware defaults, errors with suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunesmith.errors import UserError
from tunesmith.recipe.spec import DEFAULT_ADAPTER_LR, DEFAULT_FULL_LR, load_recipe, parse_overrides, recipe_from_dict

CONTRACT = """
name: my-run
model: ../shared/fixtures/stories260k
method: sft
adapter: lora
data:
  train: data/train.jsonl
  eval: 0.1
  format: auto
train: {lr: 1.0e-4, epochs: 3, max_steps: null, batch_size: 8, grad_accum: 1, max_seq_len: 1024, warmup_ratio: 0.03, weight_decay: 0.01, packing: true, seed: 0}
output: runs
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def minimal(**extra) -> dict:
    return {"name": "x", "model": "m", "data": {"train": "t.jsonl"}, **extra}


def test_the_documented_contract_validates(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, CONTRACT))
    assert recipe.name == "my-run" and recipe.method == "sft" and recipe.adapter == "lora"
    assert recipe.train.lr == 1e-4 and recipe.train.max_steps is None and recipe.train.packing is True
    assert recipe.data.eval == 0.1 and recipe.run_dir == Path("runs/my-run")


def test_dotted_overrides_win_and_parse_types(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, CONTRACT), ["train.lr=2e-5", "train.packing=false", "data.eval=held.jsonl"])
    assert recipe.train.lr == 2e-5 and recipe.train.packing is False and recipe.data.eval == "held.jsonl"
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}


def test_override_without_equals_is_a_user_error() -> None:
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["train.lr"])


@pytest.mark.parametrize(
    ("adapter", "expected"), [("lora", DEFAULT_ADAPTER_LR), ("dora", DEFAULT_ADAPTER_LR), ("full", DEFAULT_FULL_LR)]
)
def test_method_aware_learning_rate_defaults(adapter: str, expected: float) -> None:
    recipe = recipe_from_dict(minimal(adapter=adapter))
    assert recipe.train.lr is None and recipe.lr == expected
    assert recipe.train.warmup_ratio == 0.03 and recipe.train.weight_decay == 0.01


def test_more_than_three_epochs_warns() -> None:
    assert any("overfit" in note for note in recipe_from_dict(minimal(train={"epochs": 5})).advice())
    assert not any("overfit" in note for note in recipe_from_dict(minimal(train={"epochs": 2})).advice())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (minimal(train={"lerning_rate": 1e-4}), "train.lerning_rate: unknown key; did you mean 'train.lr'?"),
        (minimal(train={"learning_rate": 1e-4}), "did you mean 'train.lr'?"),
        (minimal(train={"num_train_epochs": 2}), "did you mean 'train.epochs'?"),
        (minimal(data={"train": "t", "fromat": "alpaca"}), "did you mean 'data.format'?"),
        (minimal(adapter_args={"lora_r": 8}), "did you mean 'adapter_args.r'?"),
        ({**minimal(), "base_model": "x"}, "did you mean 'model'?"),
        (minimal(method="sfft"), "method: unknown value 'sfft' (did you mean 'sft'?)"),
        (minimal(adapter="qlroa"), "did you mean 'qlora'?"),
        (minimal(data={"train": "t", "format": "sharegtp"}), "did you mean 'sharegpt'?"),
        (minimal(data={"train": "t", "template": "chatlm"}), "did you mean 'chatml'?"),
        (minimal(train={"lr": "fast"}), "train.lr: Input should be a valid number"),
        (minimal(train={"batch_size": 0}), "train.batch_size"),
        ({"name": "x", "data": {"train": "t"}}, "model: required key is missing"),
        (minimal(data={"train": "t", "eval": 1.5}), "data.eval: a held-out fraction must be in [0, 1)"),
    ],
)
def test_mistakes_name_the_key_and_suggest(raw: dict, expected: str) -> None:
    with pytest.raises(UserError) as err:
        recipe_from_dict(raw)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (minimal(method="cpt", data={"train": "t", "format": "alpaca"}), "set data.format: text"),
        (minimal(method="dpo", data={"train": "t", "format": "alpaca"}), "set data.format: preference"),
        (minimal(method="grpo", data={"train": "t", "format": "sharegpt"}), "set data.format: prompt"),
        (minimal(adapter="prefix", train={"gradient_checkpointing": True}), "set train.gradient_checkpointing: false"),
        (minimal(data={"train": "t", "replay": {"train": "g.txt"}}), "set adapter: full"),
    ],
)
def test_cross_field_conflicts_say_what_to_change(raw: dict, expected: str) -> None:
    with pytest.raises(UserError, match=expected.replace(".", r"\.")):
        recipe_from_dict(raw)


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(UserError) as err:
        recipe_from_dict({"name": "x", "data": {"train": "t"}, "train": {"lerning_rate": 1}})
    message = str(err.value)
    assert "model: required key is missing" in message and "train.lerning_rate" in message


def test_bad_yaml_and_missing_file_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="not valid YAML"):
        load_recipe(write(tmp_path, "name: [unclosed"))
    with pytest.raises(UserError, match="mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


def test_shipped_recipes_all_validate() -> None:
    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
    assert recipes, "the recipes/ folder ships example recipes"
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.name == yaml.safe_load(path.read_text())["name"]


def test_recipe_docs_are_generated_from_the_schema() -> None:
    from tunesmith.recipe.docs import render_recipe_docs

    docs = Path(__file__).resolve().parents[1] / "docs" / "recipe.md"
    assert docs.read_text() == render_recipe_docs(), "docs/recipe.md is stale: run `tunesmith docs > docs/recipe.md`"
    assert "| `train.lr` |" in docs.read_text()


def test_typos_inside_lists_of_blocks_get_suggestions() -> None:
    raw = {**minimal(method="grpo", data={"train": "t", "format": "prompt"}), "grpo": {"rewards": [{"nme": "exact_match"}]}}
    with pytest.raises(UserError, match=r"grpo\.rewards\.nme: unknown key; did you mean 'grpo\.rewards\.name'\?"):
        recipe_from_dict(raw)
