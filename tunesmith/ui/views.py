"""Run folders as the rows and pages the dashboard shows; everything is read through `tunesmith.runs`.

A row is what the runs table sorts and filters on (peak memory as train records it in run.json); a page adds
the curves (metrics.jsonl), the data health summary and recipe (run.json), the eval and forgetting tables
(eval.json, as `tunesmith report` lays them out), and the judge verdicts and regressions (eval_views.py). Runs still training are read while they write: a half-written last metrics line is skipped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.evaluate.forgetting import COMPARED, change_text, change_trend, stored_significance
from tunesmith.runs.metrics import METRICS_FILE, read_metrics
from tunesmith.runs.record import RunRecord, is_run_folder, read_run


def list_runs(runs_dir: Path, live: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per run folder under `runs_dir`, newest first; `live` maps run name -> launcher status."""
    rows = []
    for path in sorted(runs_dir.iterdir() if runs_dir.is_dir() else [], key=lambda p: p.name):
        if path.is_dir() and is_run_folder(path):
            try:
                rows.append(run_row(read_run(path), (live or {}).get(path.name)))
            except UserError as err:
                rows.append({"name": path.name, "status": "damaged", "error": str(err)})
    return sorted(rows, key=lambda r: r.get("started") or "", reverse=True)


def run_row(run: RunRecord, launcher: str | None = None) -> dict[str, Any]:
    """The runs-table row of one run."""
    evaluation = _eval(run)
    state, final = run.state, run.final or {}
    best = final.get("best_eval_loss", state.get("best_eval_loss"))
    return {
        "name": run.name, "folder": run.path.name, "method": run.method, "adapter": run.adapter,
        "base": run.base_model, "status": _status(run.status, launcher), "steps": state.get("step", 0),
        "best_eval_loss": best, "task_score": task_score(evaluation), "forgetting": forgetting(evaluation),
        "peak_memory_mib": state.get("peak_memory_mib"), "peak_memory_source": state.get("peak_memory_source"),
        "wall_time_s": wall_time(run.started, run.ended, running=run.status == "running"),
        "started": run.started,
    }


def run_page(run: RunRecord, launcher: str | None = None) -> dict[str, Any]:
    """Everything the run page shows, but the curves (fetched and refreshed on their own)."""
    from tunesmith.report import eval_rows
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


def wall_time(started: str | None, ended: str | None, running: bool) -> float | None:
    """Seconds from start to end (to now while running)."""
    if not started:
        return None
    begin = datetime.fromisoformat(started)
    end = datetime.fromisoformat(ended) if ended else (datetime.now(timezone.utc) if running else None)
    return (end - begin).total_seconds() if end else None


def _eval(run: RunRecord) -> dict[str, Any] | None:
    try:
        return run.eval_results()
    except UserError:
        return None


def _status(recorded: str, launcher: str | None) -> str:
    """run.json says "running" until the process writes otherwise; a dead process cannot, so say so."""
    if recorded == "running" and launcher in ("exited", "gone"):
        return "killed"
    return recorded
