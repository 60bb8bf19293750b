"""Before vs after: what fine-tuning changed, and the gate that fails a run which forgot too much.

Scores that are fractions (accuracies, matches, ROUGE-L, win rates) are compared in points (percentage
points: 41.0% -> 38.5% is -2.5); losses, perplexities and judge ratings as plain differences. The gate watches
the general benchmarks' primary scores only (MMLU acc, HellaSwag acc_norm, GSM8K exact match): those measure
what the model knew before, which fine-tuning on a narrow task should not erase.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tunesmith.evaluate.benchmarks import PRIMARY

FRACTIONS = ("acc", "acc_norm", "exact_match", "strict_match", "normalized_match", "rouge_l", "win_rate")
LOWER_IS_BETTER = ("loss", "ppl")
COMPARED = (*FRACTIONS, *LOWER_IS_BETTER, "score")


@dataclass(frozen=True)
class Delta:
    suite: str
    metric: str
    base: float
    tuned: float

    @property
    def in_points(self) -> bool:
        return self.metric in FRACTIONS

    @property
    def change(self) -> float:
        """tuned - base, in points for fractions."""
        scale = 100.0 if self.in_points else 1.0
        return (self.tuned - self.base) * scale

    @property
    def improved(self) -> bool | None:
        """True when the fine-tune scores better (lower, for losses and perplexities); None when equal."""
        if self.tuned == self.base:
            return None
        return self.tuned < self.base if self.metric in LOWER_IS_BETTER else self.tuned > self.base

    @property
    def general(self) -> bool:
        """A general benchmark's primary score: the ones the gate watches."""
        return PRIMARY.get(self.suite) == self.metric

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change, "unit": "points" if self.in_points else "",
                "improved": self.improved, "general": self.general}


def compare(tuned: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]) -> list[Delta]:
    """Every score both result sets have, suite by suite, in the order of `tuned`."""
    deltas = []
    for suite, scores in tuned.items():
        before = base.get(suite, {})
        for metric in COMPARED:
            if isinstance(scores.get(metric), (int, float)) and isinstance(before.get(metric), (int, float)):
                deltas.append(Delta(suite, metric, float(before[metric]), float(scores[metric])))
    return deltas


def gate_failures(deltas: list[Delta], max_drop: float) -> list[str]:
    """One message per general score that fell by more than `max_drop` points. The drop is rounded to 1e-9
    points first: (0.43 - 0.45) * 100 is -2.0000000000000018 in floating point, and is exactly 2 points."""
    return [
        f"{d.suite} {d.metric} fell {-d.change:.1f} points ({100 * d.base:.1f} -> {100 * d.tuned:.1f}), "
        f"more than the allowed {max_drop:g} (--max-drop / eval.max_drop)"
        for d in deltas
        if d.general and round(-d.change, 9) > max_drop
    ]
