"""Per-item records: written for both models, read back, and the worst regressions found and ordered."""

from __future__ import annotations

from tunesmith.evaluate.samples import read_samples, worst_regressions, write_samples


def _record(item: str, scores: list[float], gold: int) -> dict:
    prediction = max(range(len(scores)), key=scores.__getitem__)
    return {"id": item, "scores": scores, "prediction": prediction, "gold": gold,
            "correct": {"acc": prediction == gold}}


def test_worst_regressions_are_lost_items_furthest_from_gold_first(tmp_path):
    base = {"mmlu": [_record("a/0", [0.0, -1.0], 0), _record("a/1", [0.0, -1.0], 0), _record("a/2", [-1.0, 0.0], 0),
                     _record("a/3", [0.0, -1.0], 0)]}
    tuned = {"mmlu": [_record("a/0", [-0.5, 0.0], 0),  # lost, margin -0.5
                      _record("a/1", [-3.0, 0.0], 0),  # lost, margin -3: the worst
                      _record("a/2", [0.0, -1.0], 0),  # gained: not a regression
                      _record("a/3", [0.0, -2.0], 0)]}  # kept
    rows = read_samples(write_samples(tmp_path, tuned, base))
    assert len(rows) == 8 and {r["model"] for r in rows} == {"tuned", "base"}
    worst = worst_regressions(rows, {"mmlu": "acc"})
    assert [(r["id"], r["margin"]) for r in worst] == [("a/1", -3.0), ("a/0", -0.5)]
    assert worst[0]["base_prediction"] == 0 and worst[0]["prediction"] == 1 and worst[0]["gold"] == 0
    assert worst_regressions(rows, {"mmlu": "acc"}, limit=1) == worst[:1]
    assert worst_regressions(rows, {}) == []  # a suite the gate does not watch


def test_acc_norm_regressions_show_the_normalised_prediction(tmp_path):
    base = {"hellaswag": [{"id": "0", "scores": [-1.0, -2.0, -9.0], "prediction": 0, "prediction_norm": 1, "gold": 1,
                           "correct": {"acc": False, "acc_norm": True}}]}
    tuned = {"hellaswag": [{"id": "0", "scores": [-1.0, -4.0, -2.0], "prediction": 0, "prediction_norm": 2, "gold": 1,
                            "correct": {"acc": False, "acc_norm": False}}]}
    (worst,) = worst_regressions(read_samples(write_samples(tmp_path, tuned, base)), {"hellaswag": "acc_norm"})
    assert (worst["base_prediction"], worst["prediction"], worst["margin"]) == (1, 2, -4.0 - -2.0)
