"""`tunesmith report RUN`: redraw report.html (report.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesmith.commands.common import console, friendly


@friendly
def report(run_dir: Path = typer.Argument(..., help="run folder (or an eval output folder)")) -> None:
    """Redraw report.html (loss curves, eval table, before/after) in a run folder; it opens offline."""
    from tunesmith.runs.report import write_report

    console.print(f"report: {write_report(run_dir)}")
