"""report.html: one self-contained page per run folder (or eval folder), readable offline.

It shows what run.json says about the run (method, adapter, base model, steps, best checkpoint, why it
stopped), the loss curves (loss.png, redrawn from metrics.jsonl), the eval table of eval.json with the
base model's scores and the change, the forgetting gate, and a few example answers. Images are embedded as
base64 data URIs and the styling is inline: no external file, script or font, so the page can be mailed or
archived alone. `tunesmith eval` writes it; `tunesmith report RUN_DIR` redraws it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tunesmith.errors import UserError
from tunesmith.evaluate.forgetting import COMPARED, FRACTIONS, change_text, change_trend
from tunesmith.evaluate.report_sections import extra_sections, interval_text
from tunesmith.runs.atomic import write_text_atomic
from tunesmith.runs.eval_file import read_eval
from tunesmith.runs.metrics import METRICS_FILE, read_metrics
from tunesmith.runs.record import RunRecord, is_run_folder, read_run
from tunesmith.train.monitor import plot_losses

REPORT_FILE = "report.html"
_STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
td:first-child,th:first-child,td.l{text-align:left}th{background:#f3f3f3}.bad{color:#b00020;font-weight:bold}
.good{color:#1b7f3b}img{max-width:100%}pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em}
"""


def write_report(folder: str | Path) -> Path:
    """Write `folder/report.html` (and redraw loss.png / eval.png) from what the folder holds."""
    folder = Path(folder)
    run = read_run(folder) if is_run_folder(folder) else None
    record = read_eval(folder)
    if run is None and record is None:
        raise UserError(f"{folder} holds neither run.json nor eval.json; "
                        "give a run folder, or run `tunesmith eval` first")
    title = (run.name if run else None) or (record or {}).get("target", {}).get("name") or folder.name
    parts = [f"<h1>{_e(title)}</h1>"]
    if run is not None:
        parts.append(_run_section(run))
    if (folder / METRICS_FILE).is_file():
        loss_png = plot_losses(read_metrics(folder / METRICS_FILE), folder / "loss.png", title=title)
        parts.append("<h2>Loss</h2>" + _img(loss_png))
    if record is not None:
        parts.append(_eval_section(record, folder))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)} — tunesmith report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
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


def _run_section(run: RunRecord) -> str:
    state, final = run.state, run.final or {}
    facts = [
        ("status", run.status), ("method", run.method), ("adapter", run.adapter),
        ("base model", run.base_model), ("steps", state.get("step")),
        ("trainable parameters", _params(state)), ("eval loss before", final.get("eval_loss_before")),
        ("eval loss after", final.get("eval_loss")), ("best eval loss", state.get("best_eval_loss")),
        ("best step", state.get("best_step")), ("best checkpoint", final.get("best_checkpoint")),
        ("stopped early", final.get("stopped_early")), ("overfitting alarm", state.get("overfitting")),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td class='l'>{_e(_fmt(v))}</td></tr>" for k, v in facts if v is not None)
    return f"<h2>Run</h2><table>{rows}</table>"


def _params(state: dict[str, Any]) -> str | None:
    trainable, total = state.get("trainable_params"), state.get("total_params")
    if not trainable or not total:
        return None
    return f"{trainable:,} of {total:,} ({100 * trainable / total:.3f}%)"


def _eval_section(record: dict[str, Any], folder: Path) -> str:
    with_base = record.get("base_results") is not None
    columns = ["suite", "metric", "n", "score", *(["base", "change"] if with_base else []), "note"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = ""
    for row in eval_rows(record):
        cells = "".join(
            f"<td class='{row['trend'] if c == 'change' else 'l' if c in ('metric', 'note') else ''}'>{_e(row[c])}</td>"
            for c in columns
        )
        body += f"<tr>{cells}</tr>"
    parts = [f"<h2>Evaluation</h2><p>target: {_e(record['target']['model'])}"
             + (f" + adapter {_e(record['target']['adapter'])}" if record["target"].get("adapter") else "")
             + (f"; base: {_e(record['base']['model'])}" if record.get("base") else "")
             + f"; limit {_e(_fmt(record['settings'].get('limit')))}</p><table><tr>{head}</tr>{body}</table>"]
    gate = record.get("gate") or {}
    if gate.get("max_drop") is not None:
        confidence = " with 95% confidence" if gate.get("rule", "point") == "ci" else ""
        verdict = "".join(f"<p class='bad'>{_e(f)}</p>" for f in gate["failures"]) or (
            f"<p class='good'>forgetting gate passed: no general score fell more than {gate['max_drop']:g} "
            f"points{confidence}</p>")
        parts.append(verdict + "".join(f"<p>{_e(n)}</p>" for n in gate.get("notes", [])))
    chart = plot_eval(record, folder / "eval.png")
    if chart is not None:
        parts.append("<h2>Before and after</h2>" + _img(chart))
    parts.append(extra_sections(record, folder))
    parts.append(_examples(record))
    return "".join(parts)


def _examples(record: dict[str, Any]) -> str:
    blocks = []
    for suite, scores in record["results"].items():
        for example in scores.get("examples", []):
            text = "\n".join(f"{k}: {v}" for k, v in example.items())
            blocks.append(f"<details><summary>{_e(suite)} example</summary><pre>{_e(text)}</pre></details>")
    return ("<h2>Examples</h2>" + "".join(blocks)) if blocks else ""


def _img(png: Path) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f"<p><img alt='{_e(Path(png).name)}' src='data:image/png;base64,{data}'></p>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _e(text: Any) -> str:
    return html.escape(str(text))
