"""Uncertainty of scores and the forgetting gate, against cases computed by hand (see each comment)."""

from __future__ import annotations

import pytest

from tunesmith.evaluate.forgetting import Delta, gate
from tunesmith.evaluate.stats import mcnemar_exact, mean, paired_change, proportion


def _pairs(n: int, both: int, gained: int, lost: int) -> tuple[list[bool], list[bool]]:
    """Base/tuned correctness flags: `both` right in both, `gained` right only after, `lost` right only before."""
    base = [True] * both + [False] * gained + [True] * lost
    tuned = [True] * both + [True] * gained + [False] * lost
    rest = n - len(base)
    return base + [False] * rest, tuned + [False] * rest


def test_accuracy_standard_error_and_wilson_interval():
    # 3 of 4: se = sqrt(.75 * .25 / 4) = 0.21651; Wilson 95%: 0.3006 ... 0.9544 (textbook value)
    estimate = proportion([True, True, True, False])
    assert estimate.value == 0.75 and estimate.se == pytest.approx(0.216506, abs=1e-6)
    assert (estimate.low, estimate.high) == pytest.approx((0.30064, 0.95441), abs=1e-5)
    # 0 of 10: the interval is not a point; Wilson upper bound z²/(n + z²) = 3.8415/13.8415 = 0.27753
    nothing = proportion([False] * 10)
    assert nothing.low == 0.0 and nothing.high == pytest.approx(0.27753, abs=1e-5)


def test_mean_rating_interval():
    # 1, 2, 3, 4: mean 2.5, sample variance 5/3, se = sqrt(5/3 / 4) = 0.645497, half-width 1.96 * se = 1.265150
    estimate = mean([1.0, 2.0, 3.0, 4.0])
    assert estimate.se == pytest.approx(0.645497, abs=1e-6)
    assert (estimate.low, estimate.high) == pytest.approx((2.5 - 1.265150, 2.5 + 1.265150), abs=1e-5)


def test_significant_drop_fails_the_gate():
    # n = 100, 2 gained, 20 lost: change -0.18; var = (22 - 324/100)/99 = 0.189495; se = 0.043531
    # 95% CI -18 ± 8.532 pts = -26.5 ... -9.5, all below -5: fails; McNemar p = 2 * 254 / 2^22 = 1.211e-4
    base, tuned = _pairs(100, 40, 2, 20)
    paired = paired_change(base, tuned)
    assert (paired.gained, paired.lost, paired.change) == (2, 20, pytest.approx(-0.18))
    assert paired.se == pytest.approx(0.043531, abs=1e-6)
    assert (paired.low, paired.high) == pytest.approx((-0.265319, -0.094681), abs=1e-5)
    assert paired.p_value == pytest.approx(508 / 2 ** 22)
    failures, notes = gate([Delta("mmlu", "acc", 0.60, 0.42, paired)], max_drop=5)
    assert len(failures) == 1 and not notes
    assert "fell 18.0 points" in failures[0] and "95% CI -26.5…-9.5" in failures[0]
    assert "with 95% confidence" in failures[0]


def test_drop_past_the_allowance_but_not_significant_only_warns():
    # n = 25, 1 gained, 2 lost: change -4 pts; var = (3 - 1/25)/24 = 0.123333; se = 0.070238
    # 95% CI -4 ± 13.77 = -17.8 ... +9.8: not significant with --max-drop 3; McNemar p = 2 * 4/8 = 1
    base, tuned = _pairs(25, 10, 1, 2)
    paired = paired_change(base, tuned)
    assert paired.se == pytest.approx(0.070238, abs=1e-6) and paired.p_value == 1.0
    delta = Delta("mmlu", "acc", 0.48, 0.44, paired)
    failures, notes = gate([delta], max_drop=3)
    assert failures == []
    note = (f"mmlu acc -4.0 pts, 95% CI -17.8…+9.8: not significant at this sample size; about "
            f"{_needed(paired, 0.01)} items would decide it (use --limit N for a decisive answer)")
    assert notes == [note]
    point_failures, point_notes = gate([delta], max_drop=3, rule="point")  # the plain rule fails it
    assert len(point_failures) == 1 and "fell 4.0 points" in point_failures[0] and not point_notes


def _needed(paired, margin: float) -> int:
    import math

    return math.ceil(paired.n * (1.959963984540054 * paired.se / margin) ** 2)


def test_improvement_passes_and_has_a_positive_interval():
    # n = 20, 10 gained, 0 lost: +50 pts; var = (10 - 100/20)/19 = 0.263158; se = 0.114708; CI 27.5 ... 72.5
    base, tuned = _pairs(20, 5, 10, 0)
    paired = paired_change(base, tuned)
    assert (paired.low, paired.high) == pytest.approx((0.275174, 0.724826), abs=1e-5)
    assert paired.p_value == pytest.approx(2 / 2 ** 10)
    assert gate([Delta("hellaswag", "acc_norm", 0.25, 0.75, paired)], max_drop=0) == ([], [])


def test_gate_watches_only_primary_scores_and_mcnemar_edges():
    base, tuned = _pairs(100, 0, 0, 60)
    paired = paired_change(base, tuned)
    assert gate([Delta("hellaswag", "acc", 0.6, 0.0, paired), Delta("mtbench", "score", 8.0, 1.0)], 1) == ([], [])
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    with pytest.raises(ValueError, match="same items"):
        paired_change([True], [True, False])
