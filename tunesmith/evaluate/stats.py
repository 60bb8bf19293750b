"""How sure a score is: standard errors and 95% intervals, alone and paired (base vs tuned on the same items).

An accuracy over n items is a binomial proportion: standard error sqrt(p(1-p)/n), 95% interval by Wilson's
score method (it stays inside [0, 1] and does not collapse to a point at 0% or 100%, as the plain
p ± 1.96·se does). A mean of ratings (judge scores) gets the sample standard error and a normal interval.

Base vs tuned on the same items is a paired comparison: per item, d = tuned - base is -1, 0 or +1. Only the
discordant items carry information (b: tuned right, base wrong; c: base right, tuned wrong); the change is
(b - c)/n. Its 95% interval is Tango's asymptotic score interval (Tango 1998, Statistics in Medicine 17:891;
recommended by Fagerland, Lydersen & Laake 2014 and in their "Statistical Analysis of Contingency Tables",
ch. 8): the set of differences that McNemar's score test does not reject. Why this one:
  - it stays honest with few or no discordant items: with b = c = 0 at n = 80 it is ±4.6 points
    (z²/(n + z²), the paired twin of Wilson's bound), where the Wald interval (b - c)/n ± 1.96·se collapses
    to [+0.0, +0.0], and so does Newcombe's square-and-add hybrid (method 10) whenever both models score
    50% (its correlation term is 1 and the two Wilson half-widths cancel);
  - at a difference of 0 its statistic is McNemar's z = (b - c)/sqrt(b + c), so "the interval excludes 0"
    and "McNemar's asymptotic test gives p < 0.05" are the same decision: the interval and the p-value
    printed beside it never disagree (an exact-McNemar p-value beside a score interval can).
The asymptotic McNemar test (no continuity correction) keeps close to its nominal level even for small
samples (Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91); the exact conditional p-value is
kept beside it (`exact_p`) for reference. The standard error stays the Wald one: it only sizes how many
items a decisive answer needs (forgetting._advice).

A change is "significant" when its 95% interval excludes 0 (`is_significant`): the one rule the console,
report.html, the dashboard and `compare` all colour and word by. The forgetting gate fails a score only when
the whole 95% interval of its change lies below -max_drop: the drop exceeds the allowance with 95%
confidence (one-sided 97.5%).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    """tuned - base on the same items, as a fraction (multiply by 100 for points): Tango's 95% interval and
    McNemar's asymptotic p-value, which agree on whether the change is significant (see the module doc)."""

    change: float
    se: float
    low: float
    high: float
    n: int
    gained: int  # b: tuned right, base wrong
    lost: int  # c: base right, tuned wrong
    p_value: float
    exact_p: float = 1.0

    @property
    def significant(self) -> bool:
        return is_significant(self.low, self.high)

    def as_dict(self, scale: float = 1.0) -> dict[str, float | int | bool | str | list[float]]:
        """The change, se and interval multiplied by `scale` (100: points), with the counts and p-values."""
        return {"change": self.change * scale, "se": self.se * scale, "ci95": [self.low * scale, self.high * scale],
                "n": self.n, "gained": self.gained, "lost": self.lost, "p_value": self.p_value,
                "exact_p": self.exact_p, "significant": self.significant, "method": PAIRED_METHOD}


PAIRED_METHOD = "Tango score interval; McNemar asymptotic test"


def paired_change(base: Sequence[bool], tuned: Sequence[bool]) -> PairedChange:
    """The paired difference of two accuracies on the same items (in the same order)."""
    if len(base) != len(tuned):
        raise ValueError(f"paired scores need the same items: {len(base)} base vs {len(tuned)} tuned")
    n = len(base)
    gained = sum(1 for b, t in zip(base, tuned) if t and not b)
    lost = sum(1 for b, t in zip(base, tuned) if b and not t)
    if n == 0:
        return PairedChange(0.0, 0.0, -1.0, 1.0, 0, 0, 0, 1.0, 1.0)
    change = (gained - lost) / n
    variance = (gained + lost - (gained - lost) ** 2 / n) / (n - 1) if n > 1 else 0.0
    low, high = tango_interval(gained, lost, n)
    return PairedChange(change, math.sqrt(max(variance, 0.0) / n), low, high, n, gained, lost,
                        mcnemar_asymptotic(gained, lost), mcnemar_exact(gained, lost))


def tango_interval(gained: int, lost: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Tango's score interval for (gained - lost)/n: the differences d whose score statistic T(d) lies in
    [-z, z]. T falls as d rises, so each bound is found by bisection (60 halvings: below 1e-15)."""
    if n <= 0:
        return -1.0, 1.0
    estimate = (gained - lost) / n
    low = -1.0 if gained - lost == -n else _solve(lambda d: _tango_statistic(d, gained, lost, n) - z, -1.0, estimate)
    high = 1.0 if gained - lost == n else _solve(lambda d: _tango_statistic(d, gained, lost, n) + z, estimate, 1.0)
    return low, high


def _tango_statistic(delta: float, gained: int, lost: int, n: int) -> float:
    """T(d) = (b - c - n·d) / sqrt(n·(2·p21 + d(1 - d))), p21 the restricted maximum-likelihood estimate of the
    share of items only the base got right, given a true difference d (Tango 1998, eq. 4)."""
    a = 2 * n
    b = -gained - lost + (2 * n - gained + lost) * delta
    c = -lost * delta * (1 - delta)
    p21 = (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
    numerator = gained - lost - n * delta
    variance = n * (2 * p21 + delta * (1 - delta))
    if variance <= 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def _solve(f: Callable[[float], float], low: float, high: float) -> float:
    """The root of a decreasing `f` on [low, high] (f(low) >= 0 >= f(high)), by bisection."""
    for _ in range(60):
        middle = (low + high) / 2
        if f(middle) > 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def mcnemar_asymptotic(gained: int, lost: int) -> float:
    """Two-sided McNemar test without continuity correction: z = (b - c)/sqrt(b + c) against the normal."""
    if gained + lost == 0:
        return 1.0
    z = abs(gained - lost) / math.sqrt(gained + lost)
    return math.erfc(z / math.sqrt(2))


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: P(a binomial(b + c, 1/2) is at least as far from even as observed)."""
    total = gained + lost
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(gained, lost) + 1)) / 2 ** total
    return min(1.0, 2 * tail)


def is_significant(low: float, high: float) -> bool:
    """Whether a change is significant at 95%: its interval [low, high] excludes zero. The one rule every
    output (console, report.html, dashboard, compare) colours and words changes by."""
    return low > 0 or high < 0


def drop_is_significant(low: float, high: float, max_drop: float) -> bool:
    """True when the whole interval [low, high] of a change (in points) lies below -max_drop."""
    return high < -max_drop
