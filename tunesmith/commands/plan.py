"""`tunesmith plan RECIPE`: peak memory by part, host RAM and time per epoch, and what to change (plan/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tunesmith.commands.common import REWARDS_FILE_HELP, friendly


@friendly
def plan(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="plan for this GPU, e.g. h100-80g, a100-40g, l4-24g"),
    memory: Optional[str] = typer.Option(None, "--memory", help="plan for a device of this memory, e.g. 24GiB"),
    nproc: int = typer.Option(1, "--nproc", help="processes (devices) training together"),
    sharding: str = typer.Option("ddp", "--sharding", help="ddp | fsdp | zero2 | zero3"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw | adamw8bit"),
    tokens: Optional[int] = typer.Option(None, "--tokens", help="training tokens per epoch (default: read the data)"),
    rewards_file: Optional[list[Path]] = typer.Option(None, "--rewards-file", help=REWARDS_FILE_HELP),
) -> None:
    """Peak memory by part, host RAM, time per step, epoch and run of a recipe, and what to change if it does not
    fit. The model may be a folder, a cached hub id or a GGUF file (read from its metadata, not converted)."""
    from tunesmith.advise import pick_device
    from tunesmith.plan.report import print_plan
    from tunesmith.plan.run import data_size, given_size, plan_recipe
    from tunesmith.plan.setup import compute_dtype
    from tunesmith.recipe.spec import load_recipe
    from tunesmith.recipe.user_code import UserCode

    spec = load_recipe(recipe, user_code=UserCode.from_files(rewards_file or []))
    device = pick_device(gpu, memory, probe=True, dtype=compute_dtype(spec))
    size = given_size(spec, tokens) if tokens else data_size(spec)
    print_plan(plan_recipe(spec, device, nproc=nproc, sharding=sharding, optimizer=optimizer, size=size), Console())
