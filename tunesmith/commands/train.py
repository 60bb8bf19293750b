"""`tunesmith train RECIPE [k=v ...]`: the recipe's method and adapter in the one loop (train/loop.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import REWARDS_FILE_HELP, friendly


@friendly
def train(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides, e.g. train.lr=2e-5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint of this run"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run folder of the same name"),
    profile: bool = typer.Option(False, "--profile", help="print where step time goes (data, forward, backward, optimizer)"),
    nproc: int = typer.Option(1, "--nproc", help="training processes on this machine (torchrun; gloo on CPU)"),
    rewards_file: Optional[list[Path]] = typer.Option(None, "--rewards-file", help=REWARDS_FILE_HELP),
) -> None:
    """Fine-tune: the recipe's method and adapter, in one loop; writes the run folder."""
    import sys

    from tunesmith.recipe.spec import load_recipe
    from tunesmith.recipe.user_code import UserCode
    from tunesmith.train.launch import leave_process_group, relaunch, under_launcher
    from tunesmith.train.loop import train as run_training
    from tunesmith.train.preflight import check_before_loading

    spec = load_recipe(recipe, overrides or [], UserCode.from_files(rewards_file or []))
    if nproc > 1 and not under_launcher():  # a broken recipe or layout fails once, here, not in every process
        check_before_loading(spec, nproc)
        raise typer.Exit(relaunch(nproc, sys.argv[1:]))

    run_training(spec, resume=resume, overwrite=overwrite, profile=profile)
    if under_launcher():  # after a failure the rank exits non-zero anyway; a teardown could wait on its peers
        leave_process_group()
