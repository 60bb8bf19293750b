"""`tunesmith validate` and `tunesmith data stats`: everything a run checks before training, without training.

Loads the model *config* (not the weights) and the tokenizer, then runs the exact data pipeline training
uses, and prints the health report.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tunesmith.data.pipeline import PreparedData, prepare_data
from tunesmith.data.report import build_report, print_report
from tunesmith.models import load_config, load_tokenizer
from tunesmith.recipe import Recipe, load_recipe, recipe_from_dict
from tunesmith.registry import METHOD_FORMATS

console = Console()


def validate_recipe(path: Path, overrides: list[str]) -> PreparedData:
    recipe = load_recipe(path, overrides)
    console.print(f"[green]recipe ok[/]: {recipe.name} — {recipe.method} / {recipe.adapter}, lr {recipe.lr:g}")
    for note in recipe.advice():
        console.print(f"[yellow]warning:[/] {note}")
    return _inspect(recipe)


def file_report(file: str, model: str, fmt: str, template: str, max_seq_len: int) -> PreparedData:
    method = next((m for m, formats in METHOD_FORMATS.items() if fmt in formats), "sft")
    recipe = recipe_from_dict(
        {"name": "data-stats", "model": model, "method": method, "adapter": "lora",
         "data": {"train": file, "eval": 0.0, "format": fmt, "template": template},
         "train": {"max_seq_len": max_seq_len}},
        source="data stats",
    )
    return _inspect(recipe, check_method=False)


def _inspect(recipe: Recipe, check_method: bool = True) -> PreparedData:
    config = load_config(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
    tokenizer = load_tokenizer(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
    console.print(f"model ok: {config.model_type}, vocab {tokenizer.vocab_size if hasattr(tokenizer, 'vocab_size') else len(tokenizer)}, "
                  f"chat template: {'own' if tokenizer.chat_template else 'none (named template used)'}")
    data = prepare_data(recipe, tokenizer, check_method=check_method)
    if data.from_cache:
        console.print("[dim]tokenized data from cache (data.cache: false to prepare it afresh)[/]")
    report = build_report(data)
    example = next((s for s in data.train if s.trained_tokens), data.train[0] if data.train else None)
    print_report(report, example, tokenizer, console)
    return data
