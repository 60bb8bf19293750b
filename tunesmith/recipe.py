"""The recipe: one YAML file, validated once into typed objects, then passed around.

Nothing downstream reads a raw dict: a typo in a key fails here, with the key's dotted path and a
did-you-mean, instead of silently reading as a default later. `load_recipe(path, overrides)` is the
only entry point; overrides are dotted `key=value` strings from the command line.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunesmith.errors import UserError, suggestion
from tunesmith.recipe_errors import explain_validation_error
from tunesmith.registry import ADAPTERS, FORMATS, METHOD_FORMATS, METHODS, TEMPLATES

DEFAULT_ADAPTER_LR = 1e-4
"""LoRA-family learning rate from practice: adapters tolerate (and need) a larger step."""
DEFAULT_FULL_LR = 2e-5
"""Full fine-tuning learning rate from practice: large steps on all weights erase general skills."""
MAX_SAFE_EPOCHS = 3


class Strict(BaseModel):
    """Every recipe block forbids unknown keys, so typos cannot pass as defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ReplaySpec(Strict):
    """General-domain data mixed in during full fine-tuning, against catastrophic forgetting."""

    train: str | list[str]
    ratio: float = Field(0.2, gt=0.0, lt=1.0, description="share of trained tokens that come from replay data")
    format: str = "auto"


class DataSpec(Strict):
    train: str | list[str] = Field(description="file(s), folder, or hub dataset id")
    eval: float | str | list[str] | None = Field(0.1, description="a file, or a held-out fraction of train")
    format: str = Field("auto", description="auto | " + " | ".join(FORMATS))
    split: str = Field("train", description="split name for hub datasets")
    on_bad_row: Literal["error", "skip"] = Field("error", description="skip counts bad rows in the report")
    template: str = Field("auto", description="chat template: the tokenizer's own, else " + " | ".join(TEMPLATES))
    train_on: Literal["all", "last"] = Field("all", description="which assistant turns carry the loss")
    max_rows: int | None = Field(None, gt=0, description="use only the first N rows (quick experiments)")
    replay: ReplaySpec | None = None

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(_unknown("data.format", self.format, FORMATS))
        if self.template != "auto" and self.template not in TEMPLATES:
            raise ValueError(_unknown("data.template", self.template, TEMPLATES))
        if isinstance(self.eval, float) and not 0.0 <= self.eval < 1.0:
            raise ValueError("data.eval: a held-out fraction must be in [0, 1), e.g. 0.1; or give a file")
        return self


class ModelOptions(Strict):
    dtype: str = Field("auto", description="auto (bf16 where supported, else fp32) | bf16 | fp16 | fp32")
    attn_implementation: str = Field("sdpa", description="sdpa | eager | flash_attention_2")
    trust_remote_code: bool = Field(False, description="run code shipped with the model; off unless you trust it")


class AdapterArgs(Strict):
    """Knobs of the adapter methods; each method reads the ones that apply to it."""

    r: int = Field(16, gt=0, description="LoRA/DoRA rank")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description="module names, or all-linear")
    virtual_tokens: int = Field(20, gt=0, description="prefix/prompt tuning length")
    bottleneck_size: int = Field(64, gt=0, description="bottleneck adapter hidden size")


class TrainSpec(Strict):
    lr: float | None = Field(None, gt=0.0, description=f"default {DEFAULT_ADAPTER_LR} for adapters, {DEFAULT_FULL_LR} for full")
    epochs: float = Field(3, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    batch_size: int = Field(8, gt=0, description="sequences (or packed rows) per micro-batch")
    grad_accum: int = Field(1, gt=0)
    max_seq_len: int = Field(1024, gt=8)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    packing: bool = True
    seed: int = 0
    scheduler: Literal["linear", "cosine", "constant"] = "cosine"
    max_grad_norm: float = Field(1.0, gt=0.0)
    eval_every: int | None = Field(None, gt=0, description="optimizer steps between evaluations; None: at the end")
    save_every: int | None = Field(None, gt=0, description="optimizer steps between checkpoints")
    keep_checkpoints: int = Field(2, gt=0)
    gradient_checkpointing: bool = False
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    log_every: int = Field(1, gt=0)
    patience: int | None = Field(None, gt=0, description="evaluations without eval-loss improvement before warning")


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="run folder name")
    model: str = Field(description="local folder or hub id")
    method: str = Field("sft", description=" | ".join(METHODS))
    adapter: str = Field("lora", description=" | ".join(ADAPTERS))
    data: DataSpec
    train: TrainSpec = TrainSpec()
    output: str = "runs"
    model_options: ModelOptions = ModelOptions()
    adapter_args: AdapterArgs = AdapterArgs()

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        if self.method not in METHODS:
            raise ValueError(_unknown("method", self.method, METHODS))
        if self.adapter not in ADAPTERS:
            raise ValueError(_unknown("adapter", self.adapter, ADAPTERS))
        problems = _conflicts(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name

    @property
    def lr(self) -> float:
        """The learning rate in force: the recipe's, else the method-aware default."""
        if self.train.lr is not None:
            return self.train.lr
        return DEFAULT_FULL_LR if self.adapter == "full" else DEFAULT_ADAPTER_LR

    def advice(self) -> list[str]:
        """Warnings about legal but risky choices, printed before a run."""
        notes = []
        if self.train.epochs > MAX_SAFE_EPOCHS and self.train.max_steps is None:
            notes.append(
                f"train.epochs={self.train.epochs:g} > {MAX_SAFE_EPOCHS}: beyond 3 epochs fine-tuning tends to "
                "overfit the task and lose general ability; prefer more (or better) data, or watch eval loss"
            )
        if self.adapter == "full" and self.train.lr is not None and self.train.lr > 1e-4:
            notes.append(f"train.lr={self.train.lr:g} is high for full fine-tuning; {DEFAULT_FULL_LR:g} is typical")
        if self.adapter == "full" and self.data.replay is None and self.method in ("sft", "cpt"):
            notes.append("full fine-tuning without data.replay: general ability may be forgotten; "
                         "add data.replay: {train: <general data>, ratio: 0.2}")
        return notes


def _unknown(key: str, value: str, choices: Any) -> str:
    return f"{key}: unknown value '{value}'{suggestion(value, choices)}; choose one of: {', '.join(choices)}"


def _conflicts(r: Recipe) -> list[str]:
    """Cross-field conflicts, each phrased as what to change."""
    problems = []
    fmt, allowed = r.data.format, METHOD_FORMATS.get(r.method, ())
    if fmt != "auto" and r.method in METHOD_FORMATS and fmt not in allowed:
        problems.append(f"method: {r.method} trains on {' or '.join(allowed)} data, but data.format is '{fmt}'; "
                        f"set data.format: {allowed[0]} (or auto), or choose another method")
    if r.adapter == "prefix" and r.train.gradient_checkpointing:
        problems.append("adapter: prefix does not work with activation checkpointing; set train.gradient_checkpointing: false")
    if r.data.replay is not None and r.adapter != "full":
        problems.append("data.replay mixes general data into full fine-tuning; set adapter: full, or remove data.replay "
                        "(adapters leave the base weights untouched, so they forget little)")
    if r.adapter in ("prefix", "prompt") and r.adapter_args.target_modules != "all-linear":
        problems.append(f"adapter_args.target_modules does not apply to adapter: {r.adapter}; remove it")
    return problems


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["train.lr=2e-5", "data.train=x.jsonl"]` -> nested dict; values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override '{item}' must look like key=value, e.g. train.lr=2e-5")
        value = yaml.safe_load(raw) if raw else ""
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}': '{part}' is set both as a value and as a block")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into a copy of `base` (overrides win)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a plain dict into a Recipe, turning pydantic's errors into one clear UserError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Recipe.model_validate(raw)
    except ValidationError as err:
        raise UserError(explain_validation_error(err, Recipe, source)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a YAML recipe, apply dotted overrides, validate once.

    Relative data/model paths stay relative to the current directory, as users type them.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe is a mapping of keys (name, model, method, ...), got {type(raw).__name__}")
    raw = merge(raw, parse_overrides(overrides or []))
    return recipe_from_dict(raw, str(path))
