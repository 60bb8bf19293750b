"""The trade-off table's rows, read back from a comparison folder: what comparison.md/.csv show, and what
the dashboard shows of a comparison (finished or not: a strategy without its eval.json or measurement yet
gets empty cells)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.compare.execute import load_measure
from tunesmith.compare.table import base_row, strategy_row
from tunesmith.runs.eval_file import read_eval

BASE_FOLDER, RUNS_FOLDER = "base", "runs"


def comparison_rows(folder: Path, strategies: list[str]) -> list[dict[str, Any]]:
    """The base's row, then one per strategy (in the spec's order), from `folder`'s runs, evals and measures."""
    base = read_eval(folder / BASE_FOLDER) or {}
    rows = [base_row(base)]
    for name in strategies:
        run_dir = folder / RUNS_FOLDER / name
        rows.append(strategy_row(name, run_dir, read_eval(run_dir) or {}, base, load_measure(folder, name) or {},
                                 folder / BASE_FOLDER))
    return rows
