"""Run folders as the rows and pages the dashboard shows; everything is read through `tunesmith.runs`.

A row is what the runs table sorts and filters on (peak memory as train records it in run.json); a page adds
the curves (metrics.jsonl), the data health summary and recipe (run.json), the eval and forgetting tables
(eval.json, as `tunesmith report` lays them out), and the judge verdicts and regressions (eval_views.py).
Runs still training are read while they write: a half-written last metrics line is skipped.

Run folders are untrusted input (handed over, half written, damaged): one bad run.json or eval.json makes
its own row `damaged`, with the reason, never the whole table fail; numbers the page draws must be numbers.
A run a `tunesmith compare` trained shows the wall time the comparison measured (its whole `train` process,
measures/<strategy>.json), so the comparison, the runs table and the side by side agree; other runs show
run.json's start to end.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesmith.compare.execute import load_measure
from tunesmith.compare.rows import RUNS_FOLDER
from tunesmith.errors import UserError
from tunesmith.evaluate.forgetting import COMPARED, change_text, change_trend, stored_significance
from tunesmith.runs.metrics import METRICS_FILE, read_metrics
from tunesmith.runs.record import RUN_FILE, RunRecord, is_run_folder, read_run

DAMAGE = (UserError, ValueError, TypeError, AttributeError, KeyError, OSError)
"""What reading a damaged run folder raises while a row or page is built from it."""


def list_runs(runs_dir: Path, live: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per run folder under `runs_dir`, newest first; `live` maps run name -> launcher status."""
    rows = [read_row(path, (live or {}).get(path.name))
            for path in sorted(runs_dir.iterdir() if runs_dir.is_dir() else [], key=lambda p: p.name)
            if path.is_dir() and is_run_folder(path)]
    return sorted(rows, key=lambda r: str(r.get("started") or ""), reverse=True)


def read_row(path: Path, launcher: str | None = None) -> dict[str, Any]:
    """The row of the run folder `path`; a damaged folder's row says `damaged` and why."""
    try:
        return run_row(read_run(path), launcher)
    except DAMAGE as err:
        return damaged_row(path, err)


def read_page(path: Path, launcher: str | None = None) -> dict[str, Any]:
    """The page of the run folder `path`; a damaged folder's page holds its damaged row alone."""
    try:
        return run_page(read_run(path), launcher)
    except DAMAGE as err:
        return {"row": damaged_row(path, err), "recipe": None, "data": {}, "state": {}, "final": None,
                "versions": {}, "eval_rows": [], "deltas": [], "gate": None, "verdicts": None, "regressions": None}


def damaged_row(path: Path, err: Exception) -> dict[str, Any]:
    reason = str(err) if isinstance(err, UserError) else (
        f"a file in {path} is damaged ({type(err).__name__}: {err}); run again the command that wrote it")
    return {"name": path.name, "folder": path.name, "status": "damaged", "error": reason, "started": None}


def run_row(run: RunRecord, launcher: str | None = None) -> dict[str, Any]:
    """The runs-table row of one run."""
    evaluation = _eval(run)
    state, final = _mapping(run.state, run, "state"), _mapping(run.final or {}, run, "final")
    best = final.get("best_eval_loss", state.get("best_eval_loss"))
    measured = _measured_wall(run.path)
    return {
        "name": run.name, "folder": run.path.name, "method": run.method, "adapter": run.adapter,
        "base": run.base_model, "status": _status(run.status, launcher), "steps": _number(state.get("step", 0)),
        "best_eval_loss": _number(best), "task_score": task_score(evaluation), "forgetting": forgetting(evaluation),
        "peak_memory_mib": _number(state.get("peak_memory_mib")), "peak_memory_source": state.get("peak_memory_source"),
        "wall_time_s": measured if measured is not None else _run_wall(run),
        "wall_time_source": "compare" if measured is not None else "run.json",
        "started": run.started,
    }


def run_page(run: RunRecord, launcher: str | None = None) -> dict[str, Any]:
    """Everything the run page shows, but the curves (fetched and refreshed on their own)."""
    from tunesmith.runs.report import eval_rows
    from tunesmith.ui.eval_views import regressions, verdicts

    evaluation = _eval(run)
    return {
        "row": run_row(run, launcher), "recipe": run.recipe, "data": run.data, "state": run.state,
        "final": run.final, "versions": run.versions,
        "eval_rows": eval_rows(evaluation) if evaluation else [],
        "deltas": (evaluation or {}).get("deltas", []), "gate": (evaluation or {}).get("gate"),
        "verdicts": verdicts(evaluation, run.path), "regressions": regressions(run.path),
    }


def curves(run_dir: Path) -> dict[str, list[list[float]]]:
    """metrics.jsonl as {metric: [[step, value], ...]} in logging order; {} before the first record."""
    if not (run_dir / METRICS_FILE).is_file():
        return {}
    out: dict[str, list[list[float]]] = {}
    for record in read_metrics(run_dir / METRICS_FILE):
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                out.setdefault(key, []).append([record["step"], value])
    return out


def task_score(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The held-out suite's first scored metric (what the fine-tune is for), e.g. exact_match or loss."""
    scores = ((evaluation or {}).get("results") or {}).get("heldout") or {}
    for metric in COMPARED:
        if isinstance(scores.get(metric), (int, float)):
            return {"metric": metric, "value": scores[metric]}
    return None


def forgetting(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The general benchmark that lost most, tuned minus base in points, with its paired 95% interval when
    both models were scored item by item (None without a base). The worst, not the mean: one benchmark
    forgotten is not made up for by another gained, and the gate judges each on its own."""
    general = [d for d in (evaluation or {}).get("deltas", []) if d.get("general")]
    if not general:
        return None
    worst = min(general, key=lambda d: d["change"])
    return {"change": worst["change"], "suite": worst["suite"], "metric": worst["metric"],
            "ci95": worst.get("ci95"), "suites": [d["suite"] for d in general],
            "significant": stored_significance(worst), "text": change_text(worst), "trend": change_trend(worst)}


def _run_wall(run: RunRecord) -> float | None:
    try:
        return wall_time(run.started, run.ended, running=run.status == "running")
    except (TypeError, ValueError):
        raise UserError(f"{run.path / RUN_FILE}: field 'started' or 'ended' is not an ISO time "
                        f"({run.started!r}, {run.ended!r})") from None


def _measured_wall(run_dir: Path) -> float | None:
    """The wall seconds `tunesmith compare` measured for the strategy trained in `run_dir`, when it did."""
    folder = run_dir.resolve().parent
    if folder.name != RUNS_FOLDER:
        return None
    try:
        measure = load_measure(folder.parent, run_dir.resolve().name) or {}
    except UserError:
        return None
    return _number(measure.get("wall_seconds"))


def wall_time(started: str | None, ended: str | None, running: bool) -> float | None:
    """Seconds from start to end (to now while running)."""
    if not started:
        return None
    begin = datetime.fromisoformat(started)
    end = datetime.fromisoformat(ended) if ended else (datetime.now(timezone.utc) if running else None)
    return (end - begin).total_seconds() if end else None


def _eval(run: RunRecord) -> dict[str, Any] | None:
    """eval.json, its results and deltas checked to have the shapes the page reads (a UserError if not)."""
    evaluation = run.eval_results()
    if evaluation is None:
        return None
    file = run.eval_file
    results = evaluation.get("results") or {}
    if not isinstance(results, dict) or not all(isinstance(v, dict) for v in results.values()):
        raise UserError(f"{file}: field 'results' must map each suite to its scores, not {_shape(results)}")
    for index, delta in enumerate(evaluation.get("deltas") or []):
        ci95 = delta.get("ci95") if isinstance(delta, dict) else None
        if not isinstance(delta, dict) or _number(delta.get("change")) is None or not (
                ci95 is None or (isinstance(ci95, list) and len(ci95) == 2 and all(_number(x) is not None for x in ci95))):
            raise UserError(f"{file}: field 'deltas[{index}]' must hold a numeric change (and ci95 [low, high]), "
                            f"not {_shape(delta)}")
    return evaluation


def _mapping(value: Any, run: RunRecord, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{run.path / RUN_FILE}: field '{field}' must be a mapping, not {_shape(value)}")
    return value


def _number(value: Any) -> float | int | None:
    """`value` when it is a finite number the page can draw, else None (bool and text are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")):
        return None
    return value


def _shape(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '…' if len(text) > 60 else text}"


def _status(recorded: str, launcher: str | None) -> str:
    """run.json says "running" until the process writes otherwise; a dead process cannot, so say so."""
    if recorded == "running" and launcher in ("exited", "gone"):
        return "killed"
    return recorded
