"""`tunesmith compare SPEC`: several strategies on the same data and budget, and the trade-off table (compare/)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesmith.commands.common import console, friendly


@friendly
def compare(
    spec: Path = typer.Argument(..., help="comparison YAML: strategies over one data set, budget and evaluation"),
    fresh: bool = typer.Option(False, "--fresh", help="rerun every strategy instead of skipping finished ones"),
) -> None:
    """Train several strategies on the same data and budget, evaluate them alike, write the trade-off table."""
    from tunesmith.compare import run_comparison

    console.print(f"comparison folder: {run_comparison(spec, fresh=fresh)}")
