"""How sure a score is: standard errors and 95% intervals, alone and paired (base vs tuned on the same items).

An accuracy over n items is a binomial proportion: standard error sqrt(p(1-p)/n), 95% interval by Wilson's
score method (it stays inside [0, 1] and does not collapse to a point at 0% or 100%, as the plain
p ± 1.96·se does). A mean of ratings (judge scores) gets the sample standard error and a normal interval.

Base vs tuned on the same items is a paired comparison: per item, d = tuned - base is -1, 0 or +1. Only the
discordant items carry information (b: tuned right, base wrong; c: base right, tuned wrong); the change is
(b - c)/n with standard error sqrt((b + c - (b - c)²/n) / (n(n - 1))), and McNemar's exact test gives the
p-value of "no change" from a binomial(b + c, 1/2). Pairing matters: two models that share most answers have
a far narrower interval on their difference than the two separate intervals suggest.

The forgetting gate fails a score only when the whole 95% interval of its change lies below -max_drop: the
drop exceeds the allowance with 95% confidence (one-sided 97.5%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal."""


@dataclass(frozen=True)
class Estimate:
    """A score with its standard error and 95% interval (same unit as the score)."""

    value: float
    se: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int | list[float]]:
        return {"value": self.value, "se": self.se, "ci95": [self.low, self.high], "n": self.n}


def proportion(flags: Sequence[bool]) -> Estimate:
    """Accuracy of `flags` with its binomial standard error and Wilson 95% interval."""
    n = len(flags)
    if n == 0:
        return Estimate(0.0, 0.0, 0.0, 1.0, 0)
    p = sum(flags) / n
    se = math.sqrt(p * (1 - p) / n)
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / (1 + Z95 ** 2 / n)
    return Estimate(p, se, max(0.0, centre - half), min(1.0, centre + half), n)


def mean(values: Sequence[float]) -> Estimate:
    """Mean with the sample standard error (n - 1) and a normal 95% interval."""
    n = len(values)
    if n == 0:
        return Estimate(0.0, 0.0, 0.0, 0.0, 0)
    m = sum(values) / n
    se = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return Estimate(m, se, m - Z95 * se, m + Z95 * se, n)


@dataclass(frozen=True)
class PairedChange:
    """tuned - base on the same items, as a fraction (multiply by 100 for points), with McNemar's p-value."""

    change: float
    se: float
    low: float
    high: float
    n: int
    gained: int  # b: tuned right, base wrong
    lost: int  # c: base right, tuned wrong
    p_value: float

    def as_dict(self) -> dict[str, float | int | list[float]]:
        return {"change": self.change, "se": self.se, "ci95": [self.low, self.high], "n": self.n,
                "gained": self.gained, "lost": self.lost, "mcnemar_p": self.p_value}


def paired_change(base: Sequence[bool], tuned: Sequence[bool]) -> PairedChange:
    """The paired difference of two accuracies on the same items (in the same order)."""
    if len(base) != len(tuned):
        raise ValueError(f"paired scores need the same items: {len(base)} base vs {len(tuned)} tuned")
    n = len(base)
    gained = sum(1 for b, t in zip(base, tuned) if t and not b)
    lost = sum(1 for b, t in zip(base, tuned) if b and not t)
    if n == 0:
        return PairedChange(0.0, 0.0, 0.0, 0.0, 0, 0, 0, 1.0)
    change = (gained - lost) / n
    variance = (gained + lost - (gained - lost) ** 2 / n) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(max(variance, 0.0) / n)
    return PairedChange(change, se, change - Z95 * se, change + Z95 * se, n, gained, lost,
                        mcnemar_exact(gained, lost))


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: P(a binomial(b + c, 1/2) is at least as far from even as observed)."""
    total = gained + lost
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(gained, lost) + 1)) / 2 ** total
    return min(1.0, 2 * tail)


def drop_is_significant(low: float, high: float, max_drop: float) -> bool:
    """True when the whole interval [low, high] of a change (in points) lies below -max_drop."""
    return high < -max_drop
