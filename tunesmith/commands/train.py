"""`tunesmith train RECIPE [k=v ...]`: the recipe's method and adapter in the one loop (train/loop.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import friendly


@friendly
def train(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides, e.g. train.lr=2e-5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint of this run"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run folder of the same name"),
    profile: bool = typer.Option(False, "--profile", help="print where step time goes (data, forward, backward, optimizer)"),
) -> None:
    """Fine-tune: the recipe's method and adapter, in one loop; writes the run folder."""
    from tunesmith.recipe import load_recipe
    from tunesmith.train.loop import train as run_training

    run_training(load_recipe(recipe, overrides or []), resume=resume, overwrite=overwrite, profile=profile)
