"""report.html: one self-contained page per run folder (or eval folder), readable offline.

It shows what run.json says about the run (method, adapter, base model, steps, best checkpoint, why it
stopped), the loss curves (loss.png, redrawn from metrics.jsonl), the eval table of eval.json with the
base model's scores and the change, the forgetting gate, and a few example answers. Images are embedded as
base64 data URIs and the styling is inline: no external file, script or font, so the page can be mailed or
archived alone. `tunesmith eval` writes it; `tunesmith report RUN_DIR` redraws it.

This module gathers what the page shows; the markup is tunesmith/pages/report*.html.j2, rendered with every
value escaped, since a run folder is untrusted input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tunesmith.errors import UserError
from tunesmith.evaluate.forgetting import COMPARED, FRACTIONS, change_text, change_trend
from tunesmith.evaluate.report_sections import interval_text, mtbench_view, pictures_view, regressions_view
from tunesmith.pages import png_image, render_page
from tunesmith.runs.atomic import write_text_atomic
from tunesmith.runs.eval_file import read_eval
from tunesmith.runs.metrics import METRICS_FILE, read_metrics
from tunesmith.runs.record import RunRecord, is_run_folder, read_run
from tunesmith.train.monitor import plot_losses

REPORT_FILE = "report.html"


def write_report(folder: str | Path) -> Path:
    """Write `folder/report.html` (and redraw loss.png / eval.png) from what the folder holds."""
    folder = Path(folder)
    run = read_run(folder) if is_run_folder(folder) else None
    record = read_eval(folder)
    if run is None and record is None:
        raise UserError(f"{folder} holds neither run.json nor eval.json; "
                        "give a run folder, or run `tunesmith eval` first")
    title = (run.name if run else None) or (record or {}).get("target", {}).get("name") or folder.name
    loss_chart = None
    if (folder / METRICS_FILE).is_file():
        loss_chart = png_image(plot_losses(read_metrics(folder / METRICS_FILE), folder / "loss.png", title=title))
    page = render_page("report.html.j2", title=title, run_facts=_run_facts(run) if run is not None else None,
                       loss_chart=loss_chart, evaluation=_evaluation(record, folder) if record is not None else None)
    out = folder / REPORT_FILE
    write_text_atomic(out, page)
    return out


def eval_rows(record: dict[str, Any]) -> list[dict[str, str]]:
    """eval.json as display rows: suite, metric, n, score, base, change (in words, with its significance),
    note, and trend ("good", "bad", or "" for a change that is not significant: only those are coloured)."""
    base_results = record.get("base_results") or {}
    changes = {(d["suite"], d["metric"]): d for d in record.get("deltas", [])}
    rows = []
    for suite, scores in record["results"].items():
        metrics = [m for m in COMPARED if isinstance(scores.get(m), (int, float))]
        for i, metric in enumerate(metrics or ["score"]):
            delta = changes.get((suite, metric))
            rows.append({
                "suite": suite, "metric": metric, "n": _count(scores),
                "score": _value(metric, scores.get(metric)) + interval_text(metric, scores),
                "base": _value(metric, base_results.get(suite, {}).get(metric)),
                "change": change_text(delta) if delta else "", "note": _note(scores) if i == 0 else "",
                "trend": change_trend(delta) if delta else "",
            })
    return rows


def _count(scores: dict[str, Any]) -> str:
    if "n" in scores:
        return str(scores["n"])
    return f"{scores['tokens']:,} tok" if "tokens" in scores else ""


def _value(metric: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "—"
    if metric in FRACTIONS:
        return f"{100 * value:.1f}%"
    return f"{value:.4f}" if metric == "loss" else f"{value:.2f}"


def _note(scores: dict[str, Any]) -> str:
    notes = []
    if "wins" in scores:
        notes.append(f"{scores['wins']} won / {scores['losses']} lost / {scores['ties']} tied")
    failures = scores.get("failures") or {}
    if any(failures.values()):
        notes.append("failed: " + ", ".join(f"{n} {kind}" for kind, n in failures.items() if n))
    if "shots" in scores:
        notes.append(f"{scores['shots']}-shot")
    return "; ".join(notes)


def plot_eval(record: dict[str, Any], out_png: Path) -> Path | None:
    """Grouped bars of the fraction scores, base vs fine-tuned; None when there is no base to compare."""
    pairs = [d for d in record.get("deltas", []) if d["unit"] == "points"]
    if not pairs:
        return None
    fig = Figure(figsize=(8, 0.5 + 0.45 * len(pairs)), dpi=110)
    ax = fig.add_subplot()
    labels = [f"{d['suite']} {d['metric']}" for d in pairs]
    ys = range(len(pairs))
    ax.barh([y + 0.2 for y in ys], [100 * d["base"] for d in pairs], height=0.4, color="C7", label="base")
    ax.barh([y - 0.2 for y in ys], [100 * d["tuned"] for d in pairs], height=0.4, color="C0", label="fine-tuned")
    ax.set_yticks(list(ys), labels)
    ax.invert_yaxis()
    ax.set_xlabel("score (%)")
    ax.legend(loc="best")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png)
    return out_png


def _run_facts(run: RunRecord) -> list[tuple[str, str]]:
    """The Run table: (label, value) for each fact run.json records."""
    state, final = run.state, run.final or {}
    facts = [
        ("status", run.status), ("method", run.method), ("adapter", run.adapter),
        ("base model", run.base_model), ("steps", state.get("step")),
        ("trainable parameters", _params(state)), ("eval loss before", final.get("eval_loss_before")),
        ("eval loss after", final.get("eval_loss")), ("best eval loss", state.get("best_eval_loss")),
        ("best step", state.get("best_step")), ("best checkpoint", final.get("best_checkpoint")),
        ("stopped early", final.get("stopped_early")), ("overfitting alarm", state.get("overfitting")),
    ]
    return [(label, _fmt(value)) for label, value in facts if value is not None]


def _params(state: dict[str, Any]) -> str | None:
    trainable, total = state.get("trainable_params"), state.get("total_params")
    if not trainable or not total:
        return None
    return f"{trainable:,} of {total:,} ({100 * trainable / total:.3f}%)"


def _evaluation(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What report_evaluation.html.j2 shows of eval.json; draws eval.png (and mtbench.png) into `folder`."""
    target, base = record["target"], record.get("base")
    with_base = record.get("base_results") is not None
    chart = plot_eval(record, folder / "eval.png")
    return {
        "target_model": target["model"], "adapter": target.get("adapter"),
        "base_model": base["model"] if base else None, "limit": _fmt(record["settings"].get("limit")),
        "columns": ["suite", "metric", "n", "score", *(["base", "change"] if with_base else []), "note"],
        "rows": eval_rows(record), "gate": _gate(record.get("gate") or {}),
        "chart": png_image(chart) if chart is not None else None,
        "regressions": regressions_view(folder), "mtbench": mtbench_view(record, folder),
        "examples": _examples(record), "pictures": pictures_view(record),
    }


def _gate(gate: dict[str, Any]) -> dict[str, Any] | None:
    """The forgetting gate's verdict, or None when no `max_drop` was set (nothing was gated)."""
    if gate.get("max_drop") is None:
        return None
    return {"failures": gate["failures"], "max_drop": gate["max_drop"], "notes": gate.get("notes", []),
            "with_confidence": gate.get("rule", "point") == "ci"}


def _examples(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(suite, "key: value" lines) of each example answer eval.json keeps (pictures are shown by `pictures`)."""
    return [(suite, "\n".join(f"{k}: {v}" for k, v in example.items() if k != "image"))
            for suite, scores in record["results"].items() for example in scores.get("examples", [])]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)
