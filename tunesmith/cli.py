"""The `tunesmith` command: verbs only. Each parses its arguments, loads the recipe, calls one function.

User mistakes (`UserError`) print as one red message with exit status 2 and no traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from tunesmith.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune language models: plan, train, measure, ship.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show a UserError as one clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
            raise typer.Exit(2) from None

    return wrapper


def quiet_libraries() -> None:
    """Silence library chatter (weight-loading bars, deprecation notes) so our own output stays readable."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@app.command()
@friendly
def validate(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides"),
) -> None:
    """Check a recipe, load the model config and tokenizer, tokenize the data, print a health report."""
    from tunesmith.validate import validate_recipe

    validate_recipe(recipe, overrides or [])


@app.command()
@friendly
def train(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides, e.g. train.lr=2e-5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint of this run"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run folder of the same name"),
) -> None:
    """Fine-tune: the recipe's method and adapter, in one loop; writes the run folder."""
    from tunesmith.recipe import load_recipe
    from tunesmith.train.loop import train as run_training

    run_training(load_recipe(recipe, overrides or []), resume=resume, overwrite=overwrite)


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("runs"), "--out", help="where the demo writes its base model, data and run"),
) -> None:
    """Offline end-to-end demo: build a tiny model and data, fine-tune with LoRA, show held-out loss before/after."""
    from tunesmith.demo import run_demo

    run_demo(out)


@app.command()
def docs() -> None:
    """Print the recipe reference (every key, type, default, meaning), generated from the schema."""
    from tunesmith.recipe_docs import render_recipe_docs

    typer.echo(render_recipe_docs(), nl=False)


@data_app.command("stats")
@friendly
def data_stats(
    file: str = typer.Argument(..., help="data file, folder or hub dataset id"),
    model: str = typer.Option(..., "--model", "-m", help="model folder or hub id whose tokenizer to use"),
    format: str = typer.Option("auto", "--format", "-f", help="data format, or auto"),
    template: str = typer.Option("auto", "--template", help="chat template for models without one"),
    max_seq_len: int = typer.Option(1024, "--max-seq-len"),
) -> None:
    """The data health report for one file alone."""
    from tunesmith.validate import file_report

    file_report(file, model, format, template, max_seq_len)


if __name__ == "__main__":
    app()
