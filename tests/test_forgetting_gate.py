"""The forgetting gate under the point rule (`gate(..., rule="point")`): which general scores fail a run, by how
much, in which units. The confidence rule is tested in tests/test_eval_stats.py."""

from __future__ import annotations

import pytest

from tunesmith.evaluate.forgetting import Delta, compare, gate


def gate_failures(deltas: list[Delta], max_drop: float) -> list[str]:
    return gate(deltas, max_drop, rule="point")[0]


def test_a_rise_never_fails_and_a_drop_fails_beyond_max_drop() -> None:
    rise = [Delta("mmlu", "acc", 0.40, 0.45)]
    assert gate_failures(rise, max_drop=0.0) == []
    drop = [Delta("mmlu", "acc", 0.40, 0.37)]  # -3 points
    assert gate_failures(drop, max_drop=5.0) == []
    (message,) = gate_failures(drop, max_drop=2.0)
    assert message.startswith("mmlu acc fell 3.0 points (40.0 -> 37.0)")
    assert gate_failures(rise, max_drop=-100.0) and gate_failures(drop, max_drop=-100.0), "max_drop < 0 demands a rise"


def test_max_drop_is_in_points_not_fractions() -> None:
    drop = [Delta("hellaswag", "acc_norm", 0.41, 0.385)]  # 2.5 points (0.025 as a fraction)
    assert len(gate_failures(drop, max_drop=2.0)) == 1
    assert gate_failures(drop, max_drop=3.0) == []


@pytest.mark.parametrize("base,tuned,max_drop", [(0.5, 0.25, 25.0), (0.45, 0.43, 2.0), (0.3, 0.2, 10.0)])
def test_a_drop_of_exactly_max_drop_passes(base: float, tuned: float, max_drop: float) -> None:
    """(0.43 - 0.45) * 100 is -2.0000000000000018 in floating point: still exactly the allowed drop."""
    assert gate_failures([Delta("gsm8k", "exact_match", base, tuned)], max_drop) == []
    assert len(gate_failures([Delta("gsm8k", "exact_match", base, tuned - 0.001)], max_drop)) == 1


def test_lower_is_better_and_task_scores_are_not_gated() -> None:
    tuned = {"ppl": {"ppl": 90.0}, "heldout": {"loss": 3.0, "rouge_l": 0.1}, "mmlu": {"acc": 0.5}}
    base = {"ppl": {"ppl": 30.0}, "heldout": {"loss": 1.0, "rouge_l": 0.9}, "mmlu": {"acc": 0.5}}
    deltas = {(d.suite, d.metric): d for d in compare(tuned, base)}
    assert deltas[("ppl", "ppl")].improved is False and deltas[("ppl", "ppl")].change == 60.0  # plain, not points
    assert deltas[("heldout", "loss")].improved is False
    assert deltas[("heldout", "rouge_l")].change == pytest.approx(-80.0)
    assert deltas[("mmlu", "acc")].improved is None
    assert gate_failures(list(deltas.values()), max_drop=0.0) == [], "only general benchmarks' primary scores gate"
    falls = Delta("ppl", "ppl", 30.0, 20.0)
    assert falls.improved is True and falls.change == -10.0
