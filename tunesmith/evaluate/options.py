"""The settings of one evaluation, declared once: `tunesmith eval`'s command line is built from these fields.

Each field's metadata carries what the command line needs (its flags, help text, lower bound, and how the
typed text becomes the value) and, where a run's recipe may give it, the `eval:` block's field that fills it
when left unset (recipe/spec.py EvalSpec). Adding an option is one field here; commands/eval.py, the
comparison and the tests all read this class.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from tunesmith.recipe.registry import EVAL_SUITES


def option(*flags: str, help: str | None = None, min: int | None = None, parse: Callable[[Any], Any] | None = None,
           typed_as: Any = None, recipe: str | None = None, zero_is_a_value: bool = False) -> dict[str, Any]:
    """Field metadata of a command-line option.

    `typed_as`: the type the command line reads when it differs from the field's (then `parse` converts it);
    `recipe`: the EvalSpec field (dotted into sub-blocks) used when the option is unset: None, or any falsy
    value unless `zero_is_a_value` (0 shots is a choice, not an omission).
    """
    return {"flags": flags, "help": help, "min": min, "parse": parse, "typed_as": typed_as, "recipe": recipe,
            "zero_is_a_value": zero_is_a_value}


def argument(help: str) -> dict[str, Any]:
    """Field metadata of a positional command-line argument."""
    return {"argument": True, "help": help}


def comma_list(text: str | None) -> list[str] | None:
    """`--suite a,b` as ["a", "b"] (None when not given)."""
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


@dataclass
class EvalOptions:
    """The command line of `tunesmith eval`; None means "the run's eval: block, else the default"."""

    target: str = field(metadata=argument("run folder, adapter folder, model folder or hub id"))
    suites: list[str] | None = field(default=None, metadata=option(
        "--suite", help="comma-separated, any of: " + ", ".join(EVAL_SUITES) + " (default: every suite whose data is given)",
        parse=comma_list, typed_as=str, recipe="suite"))
    base: bool = field(default=False, metadata=option(
        "--base", help="also score the run's base model and print the changes"))
    limit: int | None = field(default=None, metadata=option(
        "--limit", min=1, help="items per suite (per MMLU subject, per MT-Bench category; ppl: lines)", recipe="limit"))
    shots: int | None = field(default=None, metadata=option(
        "--shots", min=0, help="few-shot examples (default 5; HellaSwag 0)", recipe="shots", zero_is_a_value=True))
    max_drop: float | None = field(default=None, metadata=option(
        "--max-drop", help="exit 3 if a general score falls more points than this with 95% confidence (implies --base)",
        recipe="max_drop", zero_is_a_value=True))
    gate_rule: str = field(default="ci", metadata=option(
        "--gate-rule", help="ci: fail only a drop significant at 95%; point: fail on the observed drop alone"))
    data_dir: str | None = field(default=None, metadata=option(
        "--data-dir", help="folder with mmlu/, hellaswag*.jsonl, gsm8k*.jsonl, mt_bench/", recipe="data_dir"))
    mmlu: str | None = field(default=None, metadata=option("--mmlu", help="MMLU CSV folder or file, or hub id"))
    hellaswag: str | None = field(default=None, metadata=option("--hellaswag", help="HellaSwag JSONL, or hub id"))
    gsm8k: str | None = field(default=None, metadata=option("--gsm8k", help="GSM8K JSONL, or hub id"))
    heldout: str | None = field(default=None, metadata=option(
        "--heldout", help="chat-format file to use instead of the run's split"))
    ppl_file: str | None = field(default=None, metadata=option("--ppl-file", help="raw text file for --suite ppl"))
    template: str | None = field(default=None, metadata=option(
        "--template", help="chat template for a plain model (default: its own)"))
    out: str | None = field(default=None, metadata=option("--out", help="folder for eval.json and report.html"))
    dtype: str = field(default="auto", metadata=option("--dtype", help="auto | bf16 | fp16 | fp32"))
    batch_size: int = field(default=16, metadata=option("--batch-size", min=1))
    max_new_tokens: int = field(default=256, metadata=option(
        "--max-new-tokens", min=1, help="generation length (GSM8K, held-out, judge)"))
    judge_url: str | None = field(default=None, metadata=option(
        "--judge-url", "--judge", help="OpenAI-compatible endpoint, e.g. "
        "http://host:8000/v1 (else $TUNESMITH_JUDGE_URL; never from a run folder)"))
    judge_model: str | None = field(default=None, metadata=option(
        "--judge-model", help="judge model name at that endpoint (default: the first it lists)", recipe="judge.model"))
    judge_key_env: str | None = field(default=None, metadata=option(
        "--judge-key-env", help="env var holding the judge's API key "
        "(default TUNESMITH_JUDGE_KEY, else OPENAI_API_KEY; never from a run folder)"))
    judge_questions: str | None = field(default=None, metadata=option(
        "--judge-questions", help='JSONL of {"question", "reference"}', recipe="judge.questions"))


def recipe_values(options: EvalOptions, spec: Any) -> dict[str, Any]:
    """The options a run's `eval:` block fills (`spec`, an EvalSpec): each unset one that names a recipe field."""
    filled = {}
    for option_field in fields(EvalOptions):
        path = option_field.metadata.get("recipe")
        value = getattr(options, option_field.name)
        if path and (value is None or (not value and not option_field.metadata["zero_is_a_value"])):
            filled[option_field.name] = functools.reduce(getattr, path.split("."), spec)
    return filled
