"""The evaluation's parts of report.html that go beyond the score table: intervals, regressions, MT-Bench.

Kept apart from report.py so the report stays one page builder and each benchmark-specific view lives with
the evaluation that produces its data.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tunesmith.evaluate.benchmarks import gated_metrics
from tunesmith.evaluate.samples import SAMPLES_FILE, read_samples, worst_regressions

FRACTION_METRICS = ("acc", "acc_norm", "exact_match", "strict_match", "normalized_match", "rouge_l", "win_rate")


def interval_text(metric: str, scores: dict[str, Any]) -> str:
    """" (95% CI 36.1–45.9%)" for a score that carries an interval, else ""."""
    interval = (scores.get("intervals") or {}).get(metric)
    if not interval:
        return ""
    low, high = interval["ci95"]
    if metric in FRACTION_METRICS:
        return f" (95% CI {100 * low:.1f}–{100 * high:.1f}%)"
    return f" (95% CI {low:.2f}–{high:.2f})"


def extra_sections(record: dict[str, Any], folder: Path) -> str:
    """The worst regressions (linking eval_samples.jsonl) and MT-Bench's per-category view, when present."""
    return _regressions(folder) + _mtbench(record, folder)


def _regressions(folder: Path) -> str:
    rows = read_samples(folder / SAMPLES_FILE)
    if not rows:
        return ""
    link = f"<p>Every item of both models: <a href='{SAMPLES_FILE}'>{SAMPLES_FILE}</a></p>"
    worst = worst_regressions(rows, gated_metrics())
    if not any(r["model"] == "base" for r in rows):
        return "<h2>Items</h2>" + link
    if not worst:
        return "<h2>Regressions</h2>" + link + "<p>No item the base model got right was lost.</p>"
    head = "<tr><th>suite</th><th>item</th><th>gold</th><th>base</th><th>tuned</th><th>log-lik margin</th></tr>"
    body = ""
    for r in worst:
        margin = "" if r["margin"] is None else f"{r['margin']:.2f}"
        body += (f"<tr id='regression-{_e(r['suite'])}-{_e(r['id'])}'><td>{_e(r['suite'])}</td>"
                 f"<td class='l'>{_e(r['id'])}</td><td>{_e(r['gold'])}</td><td>{_e(_short(r['base_prediction']))}</td>"
                 f"<td>{_e(_short(r['prediction']))}</td><td>{margin}</td></tr>")
    return (f"<h2>Worst regressions</h2>{link}<p>Items right before and wrong after fine-tuning, the tuned "
            f"model furthest from the gold answer first (search the id in {SAMPLES_FILE}).</p>"
            f"<table>{head}{body}</table>")


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _mtbench(record: dict[str, Any], folder: Path) -> str:
    result = record["results"].get("mtbench")
    if not result or not result.get("categories"):
        return ""
    base = ((record.get("base_results") or {}).get("mtbench") or {}).get("categories", {})
    pairwise = (result.get("pairwise") or {}).get("categories", {})
    head = "<tr><th>category</th><th>n</th><th>turn 1</th><th>turn 2</th><th>score</th><th>base</th><th>win rate vs base</th></tr>"
    body = ""
    for category, scores in result["categories"].items():
        win = pairwise.get(category, {}).get("win_rate")
        body += (f"<tr><td>{_e(category)}</td><td>{scores['n']}</td><td>{_num(scores.get('turn1'))}</td>"
                 f"<td>{_num(scores.get('turn2'))}</td><td>{_num(scores.get('score'))}</td>"
                 f"<td>{_num(base.get(category, {}).get('score'))}</td>"
                 f"<td>{'—' if win is None else f'{100 * win:.0f}%'}</td></tr>")
    chart = _category_chart(result["categories"], base, folder / "mtbench.png")
    return f"<h2>MT-Bench by category</h2><table>{head}{body}</table>{chart}"


def _num(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "—"


def _category_chart(categories: dict[str, Any], base: dict[str, Any], out_png: Path) -> str:
    """Horizontal bars of the mean 1-10 rating per category, tuned (and base when scored)."""
    names = list(categories)
    fig = Figure(figsize=(8, 0.6 + 0.45 * len(names)), dpi=110)
    ax = fig.add_subplot()
    ys = range(len(names))
    tuned = [categories[c].get("score") or 0.0 for c in names]
    if base:
        ax.barh([y + 0.2 for y in ys], [base.get(c, {}).get("score") or 0.0 for c in names], height=0.4,
                color="C7", label="base")
    ax.barh([y - 0.2 if base else y for y in ys], tuned, height=0.4, color="C0", label="fine-tuned")
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 10)
    ax.set_xlabel("judge rating (1-10)")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(out_png)
    data = base64.b64encode(out_png.read_bytes()).decode("ascii")
    return f"<p><img alt='{out_png.name}' src='data:image/png;base64,{data}'></p>"


def _e(value: Any) -> str:
    return html.escape(str(value))
