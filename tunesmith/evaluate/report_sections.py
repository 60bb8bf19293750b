"""The evaluation's parts of report.html that go beyond the score table: intervals, regressions, MT-Bench.

Kept apart from report.py so the report stays one page builder and each benchmark-specific view lives with
the evaluation that produces its data. These functions gather the values; the markup is
tunesmith/pages/report_sections.html.j2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tunesmith.evaluate.benchmarks import gated_metrics
from tunesmith.evaluate.samples import SAMPLES_FILE, read_samples, worst_regressions
from tunesmith.pages import png_image

FRACTION_METRICS = ("acc", "acc_norm", "exact_match", "strict_match", "normalized_match", "contains", "rouge_l",
                    "win_rate")


def interval_text(metric: str, scores: dict[str, Any]) -> str:
    """" (95% CI 36.1–45.9%)" for a score that carries an interval, else ""."""
    interval = (scores.get("intervals") or {}).get(metric)
    if not interval:
        return ""
    low, high = interval["ci95"]
    if metric in FRACTION_METRICS:
        return f" (95% CI {100 * low:.1f}–{100 * high:.1f}%)"
    return f" (95% CI {low:.2f}–{high:.2f})"


def regressions_view(folder: Path) -> dict[str, Any] | None:
    """The items section: a link to eval_samples.jsonl and, with the base model's items, the worst regressions
    (right before, wrong after); None without eval_samples.jsonl."""
    rows = read_samples(folder / SAMPLES_FILE)
    if not rows:
        return None
    worst = [{"suite": r["suite"], "id": r["id"], "gold": r["gold"], "base": _short(r["base_prediction"]),
              "tuned": _short(r["prediction"]), "margin": "" if r["margin"] is None else f"{r['margin']:.2f}"}
             for r in worst_regressions(rows, gated_metrics())]
    return {"samples_file": SAMPLES_FILE, "with_base": any(r["model"] == "base" for r in rows), "worst": worst}


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def mtbench_view(record: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """MT-Bench's per-category table (tuned, base, pairwise win rate) and chart (drawn into `folder`); None
    when the evaluation has no MT-Bench categories."""
    result = record["results"].get("mtbench")
    if not result or not result.get("categories"):
        return None
    base = ((record.get("base_results") or {}).get("mtbench") or {}).get("categories", {})
    pairwise = (result.get("pairwise") or {}).get("categories", {})
    rows = []
    for category, scores in result["categories"].items():
        win = pairwise.get(category, {}).get("win_rate")
        rows.append({"category": category, "n": scores["n"], "turn1": _num(scores.get("turn1")),
                     "turn2": _num(scores.get("turn2")), "score": _num(scores.get("score")),
                     "base": _num(base.get(category, {}).get("score")),
                     "win_rate": "—" if win is None else f"{100 * win:.0f}%"})
    chart = _category_chart(result["categories"], base, folder / "mtbench.png")
    return {"rows": rows, "chart": png_image(chart)}


def _num(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "—"


def _category_chart(categories: dict[str, Any], base: dict[str, Any], out_png: Path) -> Path:
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
    return out_png


PICTURE_URI = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/]+={0,2}$")
"""The only picture a report embeds: a base64 PNG data: URI (eval.json is untrusted; nothing else is shown)."""
MAX_PICTURE_CHARS = 200_000


def pictures_view(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The held-out image questions eval.json keeps examples of: each picture (when it is a PNG data: URI),
    the question, the reference, and the tuned and base models' answers side by side."""
    tuned = (record.get("results") or {}).get("heldout") or {}
    base = ((record.get("base_results") or {}).get("heldout") or {}).get("examples") or []
    rows = []
    for index, example in enumerate(tuned.get("examples") or []):
        if not isinstance(example, dict) or "image" not in example:
            continue
        image = example.get("image")
        ok = isinstance(image, str) and len(image) <= MAX_PICTURE_CHARS and PICTURE_URI.match(image) is not None
        other = base[index] if index < len(base) and isinstance(base[index], dict) else {}
        rows.append({"src": image if ok else None, "question": str(example.get("question", "")),
                     "reference": str(example.get("reference", "")), "tuned": str(example.get("prediction", "")),
                     "base": str(other["prediction"]) if "prediction" in other else None})
    return rows
