"""The comparison spec: one shared recipe (model, data, budget), the strategies that differ from it, and one
evaluation applied to every strategy and to the base model alike.

    name: smollm2-forgetting
    out: comparisons/smollm2-forgetting   # the comparison folder (this is the default: comparisons/<name>)
    recipe: {model: ..., data: {train: ...}, train: {max_steps: 12, ...}}
    strategies:
      full: {adapter: full}
      full-replay: {adapter: full, data: {replay: {train: general.txt, ratio: 0.2}}}
      lora: {adapter: lora}
      lora-lr3: {adapter: lora, train: {lr: 3e-4}}
      lora-ties: {merge: {runs: [lora, lora-lr3], method: ties, density: 0.5}}   # made by merging, not training
    eval: {suite: [heldout, hellaswag, ppl], limit: 40, data_dir: ../shared/data, ppl_file: ...}

Each strategy's recipe is the shared one deep-merged with its overrides, validated up front (all of them,
before anything trains), named after the strategy, and written into the comparison folder's runs/. A strategy
given as `{merge: {...}}` is not trained: once the strategies it names have trained, their runs are combined
(`tunesmith merge A B --method M`, ship/combine.py) into its run folder, which is evaluated like the others. The
keys are documented in docs/compare.md, generated from these classes (`tunesmith docs --compare`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from tunesmith.errors import UserError, suggestion
from tunesmith.recipe.errors import explain_validation_error
from tunesmith.recipe.registry import EVAL_SUITES
from tunesmith.recipe.spec import Recipe, merge, recipe_from_dict
from tunesmith.recipe.user_code import NO_USER_CODE, UserCode

MERGE_KEY = "merge"
"""A strategy holding only this key is made by merging other strategies' runs."""
DEFAULT_OUT = "comparisons"
"""The comparison folder is comparisons/<name> unless the spec's `out` names another."""


class CompareEval(BaseModel):
    """One evaluation for every strategy and the base alike (the keys of `tunesmith eval`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    suite: list[str] = Field(["heldout"], validation_alias=AliasChoices("suite", "suites"),
                             description=" | ".join(EVAL_SUITES[:-1]) + " (as the recipe's `eval.suite`; "
                             "`suites` is accepted too)")
    limit: int | None = Field(None, gt=0, description="items per suite (per MMLU subject; ppl: lines)")
    shots: int | None = Field(None, ge=0, description="few-shot examples; None: 5 for MMLU/GSM8K, 0 for HellaSwag")
    data_dir: str | None = Field(None, description="folder with mmlu/, hellaswag*.jsonl, gsm8k*.jsonl")
    ppl_file: str | None = Field(None, description="raw text file for the ppl suite")
    batch_size: int = Field(8, gt=0, description="items scored per forward pass")
    max_new_tokens: int = Field(64, gt=0, description="generation length (GSM8K, held-out answers)")


class MergeStrategy(BaseModel):
    """A strategy made by merging other strategies' runs (`tunesmith merge A B --method M`), not by training."""

    model_config = ConfigDict(extra="forbid")

    runs: list[str] = Field(min_length=2, description="the trained strategies whose runs are merged, in order")
    method: str = Field(description="as `tunesmith merge --method`: linear, cat, svd, ties, dare_linear, dare_ties, "
                        "magnitude_prune (LoRA), slerp (full)")
    weights: list[float] | None = Field(None, description="one weight per run (default 1 each)")
    density: float | None = Field(None, description="ties, dare_*, magnitude_prune: fraction of each update kept "
                                  "(default 0.5)")
    into_base: bool = Field(False, description="fold the merged LoRA adapter into the base (a standalone model)")
    seed: int = Field(0, description="DARE's random drops")


class CompareSpec(BaseModel):
    """Several strategies on one recipe's model, data and budget (`tunesmith compare SPEC`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="the comparison's name (letters, digits, . _ -)")
    out: str | None = Field(None, description="the comparison folder itself; None: comparisons/<name> (where "
                            "`tunesmith ui` looks, beside its runs/ folder)")
    recipe: dict[str, Any] = Field(description="the shared recipe (model, data, train budget): every key of "
                                   "docs/recipe.md except name and output")
    strategies: dict[str, dict[str, Any]] = Field(min_length=1, description="strategy name -> recipe keys that "
                                                  "differ from the shared recipe (deep-merged), e.g. {adapter: lora}; "
                                                  "or {merge: {...}}: a merge of other strategies' runs (below)")
    eval: CompareEval = Field(CompareEval(), description="the evaluation every strategy and the base get")

    @property
    def folder(self) -> Path:
        return Path(self.out) if self.out else Path(DEFAULT_OUT) / self.name


def load_spec(path: Path) -> CompareSpec:
    """Read and validate a comparison spec; every mistake is one UserError naming the key (with did-you-mean)."""
    if not path.is_file():
        raise UserError(f"comparison spec not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a comparison spec is a mapping of keys (name, recipe, strategies, eval, out)")
    try:
        spec = CompareSpec.model_validate(raw)
    except ValidationError as err:
        raise UserError(explain_validation_error(err, CompareSpec, f"{path} (comparison spec)")) from None
    for suite in spec.eval.suite:
        if suite not in EVAL_SUITES or suite == "judge":
            raise UserError(f"{path}: eval.suite: '{suite}' is not comparable{suggestion(suite, EVAL_SUITES[:-1])}; "
                            f"use {', '.join(EVAL_SUITES[:-1])}")
    return spec


def strategy_recipes(spec: CompareSpec, user_code: UserCode = NO_USER_CODE) -> dict[str, Recipe]:
    """Every trained strategy's validated recipe (output in the comparison folder's runs/), before anything
    trains; `user_code`: the --rewards-file files whose functions a strategy may name."""
    recipes = {}
    for name, overrides in spec.strategies.items():
        if MERGE_KEY in (overrides or {}):
            continue
        raw = merge(spec.recipe, overrides or {})
        raw.update(name=name, output=str(spec.folder / "runs"))
        raw["train"] = {**raw.get("train", {}), "log_every": 1}  # every step timed: tokens/s from metrics.jsonl
        recipes[name] = recipe_from_dict(raw, source=f"strategy {name}", user_code=user_code)
    return recipes


def write_recipe(recipe: Recipe, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = recipe.model_dump(mode="json", exclude_none=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def merge_strategies(spec: CompareSpec) -> dict[str, MergeStrategy]:
    """The strategies made by merging, validated: only `merge` in them, naming trained strategies, a known method."""
    from tunesmith.ship.merge_methods import merge_method

    trained = [name for name, overrides in spec.strategies.items() if MERGE_KEY not in (overrides or {})]
    merges = {}
    for name, overrides in spec.strategies.items():
        if MERGE_KEY not in (overrides or {}):
            continue
        if set(overrides) != {MERGE_KEY}:
            raise UserError(f"strategy {name}: a merge strategy holds only `{MERGE_KEY}` (its runs are trained "
                            f"already), not {', '.join(sorted(set(overrides) - {MERGE_KEY}))}")
        try:
            how = MergeStrategy.model_validate(overrides[MERGE_KEY])
        except ValidationError as err:
            raise UserError(explain_validation_error(err, MergeStrategy, f"strategy {name}: merge")) from None
        for run in how.runs:
            if run not in trained:
                raise UserError(f"strategy {name}: merge.runs names '{run}', which is not a trained strategy of this "
                                f"comparison{suggestion(run, trained)}; use {', '.join(trained)}")
        merge_method(how.method)
        merges[name] = how
    return merges
