"""The comparison spec: one shared recipe (model, data, budget), the strategies that differ from it, and one
evaluation applied to every strategy and to the base model alike.

    name: smollm2-forgetting
    out: comparisons                 # the comparison folder is out/name
    recipe: {model: ..., data: {train: ...}, train: {max_steps: 12, ...}}
    strategies:
      full: {adapter: full}
      full-replay: {adapter: full, data: {replay: {train: general.txt, ratio: 0.2}}}
      lora: {adapter: lora}
    eval: {suites: [heldout, hellaswag, ppl], limit: 40, data_dir: ../shared/data, ppl_file: ...}

Each strategy's recipe is the shared one deep-merged with its overrides, validated up front (all of them,
before anything trains), named after the strategy, and written into the comparison folder's runs/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunesmith.errors import UserError
from tunesmith.recipe import Recipe, merge, recipe_from_dict
from tunesmith.registry import EVAL_SUITES


class CompareEval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suites: list[str] = Field(default_factory=lambda: ["heldout"], description=" | ".join(EVAL_SUITES[:-1]))
    limit: int | None = Field(None, gt=0, description="items per suite (ppl: lines)")
    shots: int | None = Field(None, ge=0)
    data_dir: str | None = None
    ppl_file: str | None = None
    batch_size: int = Field(8, gt=0)
    max_new_tokens: int = Field(64, gt=0)


class CompareSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    out: str = "comparisons"
    recipe: dict[str, Any]
    strategies: dict[str, dict[str, Any]] = Field(min_length=1)
    eval: CompareEval = CompareEval()

    @property
    def folder(self) -> Path:
        return Path(self.out) / self.name


def load_spec(path: Path) -> CompareSpec:
    if not path.is_file():
        raise UserError(f"comparison spec not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        spec = CompareSpec.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as err:
        raise UserError(f"{path}: invalid comparison spec: {err}") from None
    for suite in spec.eval.suites:
        if suite not in EVAL_SUITES or suite == "judge":
            raise UserError(f"{path}: eval.suites: '{suite}' is not comparable; use {', '.join(EVAL_SUITES[:-1])}")
    return spec


def strategy_recipes(spec: CompareSpec) -> dict[str, Recipe]:
    """Every strategy's validated recipe (output in the comparison folder's runs/), before anything trains."""
    recipes = {}
    for name, overrides in spec.strategies.items():
        raw = merge(spec.recipe, overrides or {})
        raw.update(name=name, output=str(spec.folder / "runs"))
        raw["train"] = {**raw.get("train", {}), "log_every": 1}  # every step timed: tokens/s from metrics.jsonl
        recipes[name] = recipe_from_dict(raw, source=f"strategy {name}")
    return recipes


def write_recipe(recipe: Recipe, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = recipe.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
