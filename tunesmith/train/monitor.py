"""Watching a run's losses: the loss plot and the overfitting alarm (the records: runs/metrics.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tunesmith.runs.metrics import EVAL_KEY, TRAIN_KEY, series


def smooth(values: list[float], weight: float | None = None) -> list[float]:
    """Debiased exponential moving average, as TensorBoard draws train curves.

    The default weight averages over about a twentieth of the series, so short runs are barely smoothed
    and long noisy ones become readable.
    """
    if weight is None:
        weight = 1.0 - 1.0 / max(1, len(values) // 20)
    smoothed, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1.0 - weight) * value
        smoothed.append(average / (1.0 - weight**i))
    return smoothed


def plot_losses(metrics: list[dict[str, Any]], out_png: Path, title: str = "") -> Path:
    """Train loss (raw, faint, and smoothed) and eval loss (markers, best one starred) against step."""
    trains, evals = series(metrics, TRAIN_KEY), series(metrics, EVAL_KEY)
    from matplotlib.figure import Figure  # only when plotting: it is not needed (nor resident) during training

    fig = Figure(figsize=(8, 4.5), dpi=120)  # a bare Figure renders with Agg and leaves pyplot state alone
    ax = fig.add_subplot()
    if trains:
        steps, losses = zip(*trains)
        ax.plot(steps, losses, color="C0", alpha=0.25, linewidth=1, label="train loss")
        ax.plot(steps, smooth(list(losses)), color="C0", linewidth=2, label="train loss (smoothed)")
    if evals:
        steps, losses = zip(*evals)
        ax.plot(steps, losses, "o-", color="C1", linewidth=1.5, markersize=5, label="eval loss")
        best_step, best = min(evals, key=lambda point: point[1])
        label = f"best eval {best:.4f} @ step {best_step}"
        ax.plot([best_step], [best], "*", color="C3", markersize=14, label=label)
    if not (trains or evals):
        ax.text(0.5, 0.5, "no loss recorded yet", ha="center", va="center", transform=ax.transAxes)
    rewards, eval_rewards = series(metrics, "reward"), series(metrics, "eval_reward")
    if rewards or eval_rewards:  # GRPO/PPO: the reward they maximise, on its own axis
        twin = ax.twinx()
        if rewards:
            steps, values = zip(*rewards)
            twin.plot(steps, smooth(list(values)), color="C2", linewidth=2, label="reward (smoothed)")
        if eval_rewards:
            steps, values = zip(*eval_rewards)
            twin.plot(steps, values, "s-", color="C4", markersize=5, label="eval reward")
        twin.set_ylabel("reward")
        twin.legend(loc="lower right")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean NLL per trained token)")
    ax.set_title(title or "loss")
    ax.grid(True, alpha=0.3)
    if trains or evals:
        ax.legend(loc="best")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    return out_png


def detect_overfitting(
    evals: list[tuple[int, float]],
    trains: list[tuple[int, float]],
    patience: int,
    min_train_drop: float = 0.01,
) -> str | None:
    """A warning when eval loss has not improved for `patience` evaluations while train loss kept falling.

    "Kept falling" is judged on a least-squares line through the train losses logged between the best
    evaluation and the latest one, not on two noisy points: the fitted drop must exceed `min_train_drop`
    (relative) and three standard errors. A plateau of both is convergence, not overfitting: no warning.
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1 evaluation, got {patience}")
    if len(evals) <= patience:
        return None
    best_index = min(range(len(evals)), key=lambda i: evals[i][1])  # first of equal minima: a tie is no gain
    since_best = len(evals) - 1 - best_index
    if since_best < patience:
        return None
    (best_step, best), (last_step, last) = evals[best_index], evals[-1]
    span = [(step, loss) for step, loss in trains if best_step <= step <= last_step and math.isfinite(loss)]
    if len({step for step, _ in span}) < 3:
        return None
    start, end, stderr = _linear_trend(span)
    if start - end <= max(min_train_drop * abs(start), 3 * stderr):
        return None
    return (
        f"eval loss has not improved for {since_best} evaluations (best {best:.4f} at step {best_step}, "
        f"now {last:.4f} at step {last_step}) while train loss kept falling ({start:.4f} -> {end:.4f}): "
        f"the model is memorising its training data. Keep the checkpoint nearest step {best_step}, or train "
        "fewer epochs, lower the learning rate, or add more varied data."
    )


def _linear_trend(points: list[tuple[int, float]]) -> tuple[float, float, float]:
    """Least-squares line through (step, loss) points sorted by step, with at least 3 distinct steps:
    its value at the first and at the last step, and the standard error of their difference."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    residual = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in points)
    width = points[-1][0] - points[0][0]
    start = mean_y + slope * (points[0][0] - mean_x)
    return start, start + slope * width, math.sqrt(residual / (n - 2) / sxx) * abs(width)
