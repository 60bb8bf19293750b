"""The trade-off table: one row per strategy, measured, from the run folder, its eval.json and the
comparison's own measurements.

The general-benchmark change vs base is the same paired analysis `tunesmith eval --base` prints: base and
strategy were scored on the same items (eval_samples.jsonl in the base folder and in the run folder), so the
change carries Tango's 95% score interval and McNemar's p-value (evaluate/stats.py), and `significant`
says whether the interval excludes zero. Without per-item records (a comparison folder from before they
were kept) the change is shown untested, with no interval. Perplexity changes carry no interval (one
number over a fixed text).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tunesmith.compare.run_files import read_metrics, read_run, train_tokens_per_second
from tunesmith.evaluate.benchmarks import gated_metrics
from tunesmith.evaluate.forgetting import Delta, format_p, paired_by_item
from tunesmith.evaluate.samples import SAMPLES_FILE, read_samples

COLUMNS = ("strategy", "task_loss", "task_rouge_l", "general", "general_change_pts", "general_ci95_pts",
           "general_p", "general_significant", "ppl", "ppl_change", "peak_rss_mib", "train_wall_s", "tokens_per_s",
           "trainable_params", "tokens_seen", "train_tokens", "trained_tokens", "replay_tokens")
CI_COLUMNS = ("general_ci95_low_pts", "general_ci95_high_pts")
"""comparison.csv writes the interval [low, high] as these two numeric columns in place of general_ci95_pts."""


def item_records(folder: Path, model: str) -> dict[str, list[dict[str, Any]]]:
    """One model's per-item records ("tuned" or "base") from `folder`'s eval_samples.jsonl, by suite."""
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for row in read_samples(folder / SAMPLES_FILE):
        if row.get("model") == model:
            by_suite.setdefault(row["suite"], []).append(row)
    return by_suite


def general_change(suite: str, evaluation: dict[str, Any], base: dict[str, Any], run_dir: Path,
                   base_dir: Path) -> dict[str, Any]:
    """The paired change of `suite`'s primary score, strategy vs base, as eval.json stores a change."""
    metric = gated_metrics()[suite]
    paired = paired_by_item(suite, metric, item_records(run_dir, "tuned"), item_records(base_dir, "base"))
    before, after = base["results"][suite][metric], evaluation["results"][suite][metric]
    return Delta(suite, metric, float(before), float(after), paired).as_dict()


def general_suite(results: dict[str, Any]) -> str | None:
    """The first general benchmark in the results (MMLU, HellaSwag, GSM8K)."""
    return next((suite for suite in results if suite in gated_metrics()), None)


def strategy_row(name: str, run_dir: Path, evaluation: dict[str, Any], base: dict[str, Any],
                 measure: dict[str, Any], base_dir: Path | None = None) -> dict[str, Any]:
    """One strategy's measured row; `base_dir` holds the base's eval_samples.jsonl for the paired change."""
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
        delta = general_change(suite, evaluation, base, run_dir, base_dir or run_dir)
        row.update(general=f"{suite} {delta['metric']}", general_change_pts=delta["change"],
                   general_ci95_pts=delta["ci95"], general_p=delta["p_value"],
                   general_significant=delta["significant"])
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
        return f"{value[0]:+.1f}..{value[1]:+.1f}"
    if key == "general_p":
        return format_p(value)
    if key == "general_significant":
        return "yes" if value else "no"
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
    lines += ["", "general_change_pts: tuned minus base, in points, on the same items; general_ci95_pts: its 95% "
              "interval (Tango's paired score interval) and general_p McNemar's p-value, as `tunesmith eval --base` "
              "gives them; general_significant: whether the interval excludes 0 (- : no per-item scores to test). "
              "ppl_change: perplexity minus the base's (lower is "
              "better). peak_rss_mib: the training process's peak resident memory. tokens_per_s: real tokens "
              "over the summed step times. tokens_seen: tokens the budget trained on; train_tokens / "
              "trained_tokens / replay_tokens: the prepared data set (all tokens / loss-carrying / from replay).", ""]
    path.write_text("\n".join(lines))
    return path


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """The rows as CSV, every cell a plain value (the interval split into its two bounds)."""
    at = COLUMNS.index("general_ci95_pts")
    fields = [*COLUMNS[:at], *CI_COLUMNS, *COLUMNS[at + 1:]]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            low, high = row.get("general_ci95_pts") or (None, None)
            writer.writerow({**row, CI_COLUMNS[0]: low, CI_COLUMNS[1]: high})
    return path
