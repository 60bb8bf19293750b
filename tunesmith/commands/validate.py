"""`tunesmith validate` and `tunesmith data stats`: everything a run checks before training, without training.

Loads the model *config* (not the weights) and the tokenizer, then runs the exact data pipeline training
uses, and prints the health report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from tunesmith.commands.common import REWARDS_FILE_HELP, friendly

if TYPE_CHECKING:
    from tunesmith.data.pipeline import PreparedData
    from tunesmith.recipe.spec import Recipe

console = Console()


def validate_recipe(path: Path, overrides: list[str], rewards_files: list[Path] | None = None) -> PreparedData:
    from tunesmith.recipe.spec import load_recipe
    from tunesmith.recipe.user_code import UserCode

    recipe = load_recipe(path, overrides, UserCode.from_files(rewards_files or []))
    console.print(f"[green]recipe ok[/]: {recipe.name} — {recipe.method} / {recipe.adapter}, lr {recipe.lr:g}")
    for note in recipe.advice():
        console.print(f"[yellow]warning:[/] {note}")
    return _inspect(recipe)


def file_report(file: str, model: str, fmt: str, template: str, max_seq_len: int) -> PreparedData:
    from tunesmith.methods import METHOD_FORMATS
    from tunesmith.recipe.spec import recipe_from_dict

    method = next((m for m, formats in METHOD_FORMATS.items() if fmt in formats), "sft")
    recipe = recipe_from_dict(
        {"name": "data-stats", "model": model, "method": method, "adapter": "lora",
         "data": {"train": file, "eval": 0.0, "format": fmt, "template": template},
         "train": {"max_seq_len": max_seq_len}},
        source="data stats",
    )
    return _inspect(recipe, check_method=False)


def _inspect(recipe: Recipe, check_method: bool = True) -> PreparedData:
    from tunesmith.data.pipeline import prepare_data
    from tunesmith.data.report import build_report, print_report, report_example
    from tunesmith.models.load import load_config, load_tokenizer
    from tunesmith.train import preflight

    if check_method:  # a whole recipe: what `train` checks before loading weights (a file report has no run)
        preflight.check_before_loading(recipe)
    config = load_config(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
    tokenizer = load_tokenizer(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
    console.print(f"model ok: {config.model_type}, vocab {tokenizer.vocab_size if hasattr(tokenizer, 'vocab_size') else len(tokenizer)}, "
                  f"chat template: {'own' if tokenizer.chat_template else 'none (named template used)'}")
    data = prepare_data(recipe, tokenizer, check_method=check_method)
    if data.from_cache:
        console.print("[dim]tokenized data from cache (data.cache: false to prepare it afresh)[/]")
    for note in preflight.batch_notes(recipe, data) if check_method else []:
        console.print(f"[yellow]warning:[/] {note}")
    if data.stream is not None:
        console.print(f"streamed from {len(data.stream.shards)} shard(s): the report covers the first "
                      f"{data.rows:,} rows of {data.stream.shards[0].name} (data.shuffle_buffer); the rest is read while training")
    report = build_report(data, _image_reader(recipe, config) or tokenizer)
    example, images = report_example(data)
    print_report(report, example, tokenizer, console, images)
    return data


def _image_reader(recipe: Recipe, config: object) -> object | None:
    """A vision-language model's processor, which says how many tokens each picture becomes; None otherwise."""
    from tunesmith.vision.families import is_vision_config
    from tunesmith.vision.processor import load_processor

    if not is_vision_config(config):
        return None
    return load_processor(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)


@friendly
def validate(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides"),
    rewards_file: Optional[list[Path]] = typer.Option(None, "--rewards-file", help=REWARDS_FILE_HELP),
) -> None:
    """Check a recipe, load the model config and tokenizer, tokenize the data, print a health report."""
    validate_recipe(recipe, overrides or [], rewards_file)


@friendly
def data_stats(
    file: str = typer.Argument(..., help="data file, folder or hub dataset id"),
    model: str = typer.Option(..., "--model", "-m", help="model folder or hub id whose tokenizer to use"),
    format: str = typer.Option("auto", "--format", "-f", help="data format, or auto"),
    template: str = typer.Option("auto", "--template", help="chat template for models without one"),
    max_seq_len: int = typer.Option(1024, "--max-seq-len"),
) -> None:
    """The data health report for one file alone."""
    file_report(file, model, format, template, max_seq_len)
