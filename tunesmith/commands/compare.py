"""`tunesmith compare SPEC`: several strategies on the same data and budget, and the trade-off table (compare/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import REWARDS_FILE_HELP, console, friendly


@friendly
def compare(
    spec: Path = typer.Argument(..., help="comparison YAML: strategies over one data set, budget and evaluation"),
    fresh: bool = typer.Option(False, "--fresh", help="rerun every strategy instead of skipping finished ones"),
    rewards_file: Optional[list[Path]] = typer.Option(None, "--rewards-file", help=REWARDS_FILE_HELP),
) -> None:
    """Train several strategies on the same data and budget, evaluate them alike, write the trade-off table."""
    from tunesmith.compare import run_comparison
    from tunesmith.recipe.user_code import UserCode

    folder = run_comparison(spec, fresh=fresh, user_code=UserCode.from_files(rewards_file or []))
    console.print(f"comparison folder: {folder}")
