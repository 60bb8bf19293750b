"""Uncertainty of scores and the forgetting gate, against cases computed by hand (see each comment)."""

from __future__ import annotations

import math
import random

import pytest

from tunesmith.evaluate.forgetting import Delta, change_text, change_trend, gate
from tunesmith.evaluate.stats import (
    Z95,
    is_significant,
    mcnemar_asymptotic,
    mcnemar_exact,
    mean,
    paired_change,
    proportion,
    tango_interval,
)


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
    # Tango 95% CI -27.3 ... -9.9 pts, all below -5: fails; McNemar z = -18/sqrt(22), p = erfc(|z|/√2) = 1.242e-4;
    # exact: 2 * 254 / 2^22 = 1.211e-4
    base, tuned = _pairs(100, 40, 2, 20)
    paired = paired_change(base, tuned)
    assert (paired.gained, paired.lost, paired.change) == (2, 20, pytest.approx(-0.18))
    assert paired.se == pytest.approx(0.043531, abs=1e-6)
    assert (paired.low, paired.high) == pytest.approx((-0.272892, -0.098687), abs=1e-5)
    assert paired.p_value == pytest.approx(math.erfc(18 / math.sqrt(22) / math.sqrt(2)))
    assert paired.exact_p == pytest.approx(508 / 2 ** 22)
    failures, notes = gate([Delta("mmlu", "acc", 0.60, 0.42, paired)], max_drop=5)
    assert len(failures) == 1 and not notes
    assert "fell 18.0 points" in failures[0] and "95% CI -27.3…-9.9" in failures[0]
    assert "with 95% confidence" in failures[0]


def test_drop_past_the_allowance_but_not_significant_only_warns():
    # n = 25, 1 gained, 2 lost: change -4 pts; var = (3 - 1/25)/24 = 0.123333; se = 0.070238
    # Tango 95% CI -22.0 ... +13.3: not significant with --max-drop 3; McNemar p = erfc(1/√3/√2) = 0.564, exact 1
    base, tuned = _pairs(25, 10, 1, 2)
    paired = paired_change(base, tuned)
    assert paired.se == pytest.approx(0.070238, abs=1e-6) and paired.exact_p == 1.0
    assert paired.p_value == pytest.approx(0.563703, abs=1e-6)
    delta = Delta("mmlu", "acc", 0.48, 0.44, paired)
    failures, notes = gate([delta], max_drop=3)
    assert failures == []
    note = (f"mmlu acc -4.0 pts, 95% CI -22.0…+13.3: not significant at this sample size; about "
            f"{_needed(paired, 0.01)} items would decide it (use --limit N for a decisive answer)")
    assert notes == [note]
    point_failures, point_notes = gate([delta], max_drop=3, rule="point")  # the plain rule fails it
    assert len(point_failures) == 1 and "fell 4.0 points" in point_failures[0] and not point_notes


def _needed(paired, margin: float) -> int:
    import math

    return math.ceil(paired.n * (1.959963984540054 * paired.se / margin) ** 2)


def test_improvement_passes_and_has_a_positive_interval():
    # n = 20, 10 gained, 0 lost: +50 pts; Tango CI 25.8 ... 70.1; McNemar z = 10/sqrt(10), exact p = 2 / 2^10
    base, tuned = _pairs(20, 5, 10, 0)
    paired = paired_change(base, tuned)
    assert (paired.low, paired.high) == pytest.approx((0.258312, 0.700702), abs=1e-5)
    assert paired.p_value == pytest.approx(math.erfc(math.sqrt(10) / math.sqrt(2)))
    assert paired.exact_p == pytest.approx(2 / 2 ** 10)
    assert gate([Delta("hellaswag", "acc_norm", 0.25, 0.75, paired)], max_drop=0) == ([], [])


def test_gate_watches_only_primary_scores_and_mcnemar_edges():
    base, tuned = _pairs(100, 0, 0, 60)
    paired = paired_change(base, tuned)
    assert gate([Delta("hellaswag", "acc", 0.6, 0.0, paired), Delta("mtbench", "score", 8.0, 1.0)], 1) == ([], [])
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    with pytest.raises(ValueError, match="same items"):
        paired_change([True], [True, False])


def test_tango_interval_matches_the_published_example():
    """Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017), ch. 8: complete response
    before/after consolidation therapy (Cavo et al. 2012), n11 59, n12 6, n21 16, n22 80. Published: Tango
    asymptotic score interval -0.0621 (95% CI -0.1240 to -0.0054); McNemar asymptotic P = 0.033006, Z = -2.132
    (the same numbers the R package contingencytables pins in its tests)."""
    low, high = tango_interval(6, 16, 161)
    assert (round(low, 4), round(high, 4)) == (-0.1240, -0.0054)
    assert mcnemar_asymptotic(6, 16) == pytest.approx(0.033006, abs=5e-7)
    base, tuned = _pairs(161, 59, 6, 16)
    paired = paired_change(base, tuned)
    assert round(paired.change, 4) == -0.0621 and (paired.low, paired.high) == (low, high)


def test_no_discordant_items_leave_an_honest_interval():
    """80 items, none changed: not [+0.0, +0.0] (what the Wald interval claimed) but ±z²/(n + z²) = ±4.58 points."""
    same = [True] * 40 + [False] * 40
    paired = paired_change(same, same)
    bound = Z95 ** 2 / (80 + Z95 ** 2)
    assert (paired.low, paired.high) == pytest.approx((-bound, bound), abs=1e-9) and bound == pytest.approx(0.0458, abs=1e-4)
    assert paired.p_value == 1.0 and paired.significant is False
    record = Delta("hellaswag", "acc_norm", 0.5, 0.5, paired).as_dict()
    assert record["ci95"] == pytest.approx([-4.58, 4.58], abs=0.01)
    assert change_text(record) == "+0.0 pts, not significant (95% CI -4.6..+4.6, p=1.00)"


@pytest.mark.parametrize("n_extra", [0, 7, 60])
def test_interval_and_p_value_never_disagree(n_extra: int):
    """The interval excludes 0 exactly when McNemar's asymptotic test gives p < 0.05 (Tango's statistic at a
    difference of 0 is McNemar's z), for every table with up to 30 items changed each way."""
    for gained in range(31):
        for lost in range(31):
            low, high = tango_interval(gained, lost, gained + lost + n_extra) if gained + lost + n_extra else (-1, 1)
            assert is_significant(low, high) == (mcnemar_asymptotic(gained, lost) < 0.05), (gained, lost, n_extra)
            assert low <= (gained - lost) / max(gained + lost + n_extra, 1) <= high


def _coverage(n: int, only_tuned: float, only_base: float, draws: int = 2000) -> tuple[float, float]:
    """Share of simulated draws whose Tango and Wald 95% intervals hold the true change."""
    rng, true = random.Random(7), only_tuned - only_base
    tango = wald = 0
    for _ in range(draws):
        items = [rng.random() for _ in range(n)]
        gained = sum(u < only_tuned for u in items)
        lost = sum(only_tuned <= u < only_tuned + only_base for u in items)
        low, high = tango_interval(gained, lost, n)
        tango += low <= true <= high
        change = (gained - lost) / n
        se = math.sqrt(max(gained + lost - (gained - lost) ** 2 / n, 0) / (n - 1) / n)
        wald += change - Z95 * se <= true <= change + Z95 * se
    return tango / draws, wald / draws


def test_tango_interval_covers_the_true_change_about_95_percent():
    """Simulated paired items. n = 40, 5% only-tuned-right, 12% only-base-right: near 95% (measured 93.7%).
    n = 80, 0.5% and 2% (few discordant items, often none): Tango 99.6%, the old Wald interval 79.6%."""
    assert 0.93 <= _coverage(40, 0.05, 0.12)[0] <= 0.975
    tango, wald = _coverage(80, 0.005, 0.02)
    assert tango >= 0.95 and wald < 0.85


def test_only_significant_changes_are_coloured_and_worded_so():
    """hellaswag -5.0 pts on 40 items (2 gained, 4 lost): 95% CI about -16..+6, not significant: no colour."""
    base, tuned = _pairs(40, 10, 2, 4)
    unsure = Delta("hellaswag", "acc_norm", 0.35, 0.30, paired_change(base, tuned)).as_dict()
    assert unsure["significant"] is False and change_trend(unsure) == ""
    assert change_text(unsure).startswith("-5.0 pts, not significant (95% CI -1")
    assert unsure["paired"]["change"] == pytest.approx(-5.0) and unsure["paired"]["unit"] == "points"
    assert unsure["paired"]["ci95"] == unsure["ci95"] and unsure["p_value"] == unsure["paired"]["p_value"]
    assert unsure["text"] == change_text(unsure)  # eval.json says it in words too
    base, tuned = _pairs(100, 40, 2, 20)
    sure = Delta("hellaswag", "acc_norm", 0.60, 0.42, paired_change(base, tuned)).as_dict()
    assert sure["significant"] is True and change_trend(sure) == "bad"
    assert change_text(sure) == "-18.0 pts, significant (95% CI -27.3..-9.9, p=<0.001)"
    untested = Delta("heldout", "loss", 2.0, 1.5).as_dict()
    assert untested["significant"] is None and change_trend(untested) == ""
    assert change_text(untested) == "-0.5000, untested"
