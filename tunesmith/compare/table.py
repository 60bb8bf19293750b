"""The trade-off table: one row per strategy, measured, from the run folder, its eval.json and the
comparison's own measurements.

General-benchmark change vs base comes with a 95% interval. The eval module keeps accuracies, not per-item
outcomes, so the interval is the normal one for a difference of two proportions over n items each,
1.96 x sqrt(p0(1-p0)/n + p1(1-p1)/n), in points. It treats the two scores as independent; the same items are
scored twice, so the paired interval would be narrower: this one errs wide. Perplexity changes carry no
interval (one number over a fixed text).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from tunesmith.compare.run_files import read_metrics, read_run, train_tokens_per_second
from tunesmith.evaluate.benchmarks import gated_metrics

Z95 = 1.96
COLUMNS = ("strategy", "task_loss", "task_rouge_l", "general", "general_change_pts", "general_ci95_pts",
           "ppl", "ppl_change", "peak_rss_mib", "train_wall_s", "tokens_per_s", "trainable_params",
           "tokens_seen", "train_tokens", "trained_tokens", "replay_tokens")


def proportion_change(base: float, tuned: float, n: int) -> tuple[float, float]:
    """(change, half-width of its 95% interval), both in points."""
    half = Z95 * math.sqrt((base * (1 - base) + tuned * (1 - tuned)) / max(n, 1))
    return 100 * (tuned - base), 100 * half


def general_suite(results: dict[str, Any]) -> str | None:
    """The first general benchmark in the results (MMLU, HellaSwag, GSM8K)."""
    return next((suite for suite in results if suite in gated_metrics()), None)


def strategy_row(name: str, run_dir: Path, evaluation: dict[str, Any], base: dict[str, Any],
                 measure: dict[str, Any]) -> dict[str, Any]:
    run = read_run(run_dir) or {}
    results, before = evaluation.get("results", {}), base.get("results", {})
    heldout = results.get("heldout", {})
    data = run.get("data", {})
    row: dict[str, Any] = {
        "strategy": name, "task_loss": heldout.get("loss"), "task_rouge_l": heldout.get("rouge_l"),
        "peak_rss_mib": measure.get("peak_rss_mib"), "train_wall_s": measure.get("wall_seconds"),
        "tokens_per_s": train_tokens_per_second(read_metrics(run_dir)),
        "trainable_params": run.get("state", {}).get("trainable_params"),
        "tokens_seen": run.get("state", {}).get("tokens"),
        "train_tokens": data.get("train_tokens"), "trained_tokens": data.get("trained_tokens"),
        "replay_tokens": (data.get("replay") or {}).get("replay_tokens", 0),
    }
    suite = general_suite(results)
    if suite and suite in before:
        metric = gated_metrics()[suite]
        change, half = proportion_change(before[suite][metric], results[suite][metric], results[suite].get("n", 0))
        row.update(general=f"{suite} {metric}", general_change_pts=change, general_ci95_pts=half)
    if "ppl" in results and "ppl" in before:
        row.update(ppl=results["ppl"]["ppl"], ppl_change=results["ppl"]["ppl"] - before["ppl"]["ppl"])
    return row


def base_row(base: dict[str, Any]) -> dict[str, Any]:
    results = base.get("results", {})
    row: dict[str, Any] = {"strategy": "base (untrained)", "task_loss": results.get("heldout", {}).get("loss"),
                           "task_rouge_l": results.get("heldout", {}).get("rouge_l")}
    suite = general_suite(results)
    if suite:
        primary = gated_metrics()[suite]
        row.update(general=f"{suite} {primary} = {100 * results[suite][primary]:.1f}")
    if "ppl" in results:
        row["ppl"] = results["ppl"]["ppl"]
    return row


def cell(value: Any, key: str) -> str:
    """One value as comparison.md shows it (signed changes, ± intervals, thousands separators)."""
    if value is None:
        return "-"
    if key == "general_change_pts":
        return f"{value:+.1f}"
    if key == "general_ci95_pts":
        return f"±{value:.1f}"
    if key == "ppl_change":
        return f"{value:+.2f}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_markdown(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row.get(key), key) for key in COLUMNS) + " |" for row in rows]
    lines += ["", "general_change_pts: tuned minus base, in points, with a 95% normal interval for two "
              "proportions (independent samples: errs wide). ppl_change: perplexity minus the base's (lower is "
              "better). peak_rss_mib: the training process's peak resident memory. tokens_per_s: real tokens "
              "over the summed step times. tokens_seen: tokens the budget trained on; train_tokens / "
              "trained_tokens / replay_tokens: the prepared data set (all tokens / loss-carrying / from replay).", ""]
    path.write_text("\n".join(lines))
    return path


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path
