"""The comparison's charts: one PNG with a bar panel per trade-off (task loss, general change with its 95%
interval, perplexity change, peak memory, tokens/s, trainable parameters). An error key names a row's interval
[low, high] (asymmetric: a paired change's score interval), drawn as error bars from the bar's value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (
    ("task_loss", "held-out task loss (lower is better)", None),
    ("general_change_pts", "general benchmark change vs base (points, paired 95% CI)", "general_ci95_pts"),
    ("ppl_change", "text perplexity change vs base", None),
    ("peak_rss_mib", "peak memory (MiB)", None),
    ("tokens_per_s", "training tokens/s", None),
    ("trainable_params", "trainable parameters", None),
)


def write_charts(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["strategy"] for row in rows]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (key, label, error_key) in zip(axes.flat, PANELS):
        values = [row.get(key) if row.get(key) is not None else 0.0 for row in rows]
        errors = _error_bars(values, [row.get(error_key) for row in rows]) if error_key else None
        ax.bar(names, values, yerr=errors, capsize=4 if errors else 0, color="#4C72B0")
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        if key.endswith(("change", "_pts")):
            ax.axhline(0, color="black", linewidth=0.8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _error_bars(values: list[float], intervals: list[Any]) -> list[list[float]]:
    """matplotlib's asymmetric yerr, [[below...], [above...]], from each bar's [low, high] (none: no bar)."""
    below = [value - interval[0] if interval else 0.0 for value, interval in zip(values, intervals)]
    above = [interval[1] - value if interval else 0.0 for value, interval in zip(values, intervals)]
    return [below, above]
