"""`tunesmith compare` folders as the dashboard shows them: the trade-off table and its charts.

The rows are `compare`'s own (`compare.rows.comparison_rows`, what comparison.md and .csv hold), each cell
formatted as comparison.md formats it, and the chart panels are `compare.charts.PANELS` (what
comparison.png draws); the page draws those bars itself. A comparison folder is one holding `spec.yaml`
and `logs/` (what `compare` writes first): inside the runs folder, the runs folder's own parent (`--runs
comparisons/NAME/runs` shows a comparison's strategies as runs), or in `comparisons/` beside the runs folder
(where `compare` writes by default). The page only names folders found here: no path comes from a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.compare.charts import PANELS
from tunesmith.compare.rows import RUNS_FOLDER, comparison_rows
from tunesmith.compare.spec import load_spec
from tunesmith.compare.table import COLUMNS, cell
from tunesmith.errors import UserError
from tunesmith.runs.record import is_run_folder
from tunesmith.ui.guard import NotFound

SPEC_FILE, LOGS = "spec.yaml", "logs"
DEFAULT_OUT = "comparisons"


def find_comparisons(runs_dir: Path) -> dict[str, Path]:
    """Comparison folders by name (the first of a name wins): see the module doc for where they are looked for."""
    runs_dir = runs_dir.resolve()
    candidates = [runs_dir.parent]
    for parent in (runs_dir, runs_dir.parent / DEFAULT_OUT):
        if parent.is_dir():
            candidates += sorted(p for p in parent.iterdir() if p.is_dir())
    found: dict[str, Path] = {}
    for folder in candidates:
        marked = (folder / SPEC_FILE).is_file() and (folder / LOGS).is_dir()
        if marked and not is_run_folder(folder) and folder.name not in found:
            found[folder.name] = folder
    return found


def comparison_list(runs_dir: Path) -> list[dict[str, Any]]:
    """Name, folder and strategies of every comparison found (for the runs page's links)."""
    listed = []
    for name, folder in find_comparisons(runs_dir).items():
        try:
            strategies = list(load_spec(folder / SPEC_FILE).strategies)
        except UserError as err:
            listed.append({"name": name, "folder": str(folder), "error": str(err)})
            continue
        listed.append({"name": name, "folder": str(folder), "strategies": strategies,
                       "finished": (folder / "comparison.csv").is_file()})
    return listed


def comparison_page(runs_dir: Path, name: str) -> dict[str, Any]:
    """The trade-off table (raw values and comparison.md's cells) and the chart panels of comparison `name`."""
    folder = find_comparisons(runs_dir).get(name)
    if folder is None:
        raise NotFound(f"no comparison named '{name}' beside or inside {runs_dir} (a folder `tunesmith compare` "
                        "wrote, holding spec.yaml and logs/)")
    spec = load_spec(folder / SPEC_FILE)
    try:
        raw = comparison_rows(folder, list(spec.strategies))
        cells = [[cell(row.get(key), key) for key in COLUMNS] for row in raw]
    except (ValueError, TypeError, AttributeError, KeyError) as err:  # the folder's files are untrusted input
        raise UserError(f"comparison {name} ({folder}) holds a damaged file ({type(err).__name__}: {err}); run "
                        "`tunesmith compare` on its spec again") from None
    rows = [_drawable(row) for row in raw]
    runs_dir = runs_dir.resolve()
    for row in rows[1:]:  # a strategy's run opens from the table when the dashboard shows its runs folder
        run_dir = (folder / RUNS_FOLDER / row["strategy"]).resolve()
        row["run"] = row["strategy"] if run_dir.parent == runs_dir and is_run_folder(run_dir) else None
    return {
        "name": name, "folder": str(folder), "columns": list(COLUMNS),
        "rows": rows, "cells": cells,
        "panels": [{"key": key, "label": _label(key, label, spec.eval.ppl_file), "error": error}
                   for key, label, error in PANELS],
    }


def _drawable(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with every chart value a number (an error bar: a number or a [low, high] interval) or None: a
    damaged measures/*.json may hold anything."""
    keys = {key for key, _, error in PANELS for key in (key, error) if key}

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def drawable(v: Any) -> bool:
        return number(v) or (isinstance(v, list) and len(v) == 2 and all(map(number, v)))
    return {k: (v if k not in keys or drawable(v) else None) for k, v in row.items()}


def _label(key: str, label: str, ppl_file: str | None) -> str:
    """A panel's title; the perplexity panel names the text the comparison measured (its eval.ppl_file)."""
    if key == "ppl_change":
        return "text perplexity change vs base" + (f" ({Path(ppl_file).name})" if ppl_file else "")
    return label
