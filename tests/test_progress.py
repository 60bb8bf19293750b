"""The training progress bar: an ETA after the first step however long a step takes (rich's own estimate
drops steps over 30 s), and a label while the base model is evaluated before step 1."""

from __future__ import annotations

import pytest

from tunesmith.train import progress as progress_module
from tunesmith.train.progress import BASE_EVAL, TrainProgress, eta_seconds, format_eta

RECORD = {"loss": 1.0, "lr": 1e-4, "tokens_per_s": 10.0}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_shows_when_each_step_takes_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    bar = TrainProgress(total=20)
    with bar:
        assert "-:--:--" in bar.line()  # nothing measured yet
        clock.now += 108.0  # one 108 s step, as a 135M model on a slow CPU takes
        bar.update(1, RECORD)
        assert "0:34:12" in bar.line()  # 19 steps x 108 s
        clock.now += 8.0  # counts down between steps
        assert "0:34:04" in bar.line()


def test_base_evaluation_is_labelled_and_not_counted_as_step_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    bar = TrainProgress(total=4)
    seen = []

    def evaluate() -> str:
        seen.append(bar.line())
        clock.now += 50.0  # the ~50 s evaluation before step 1
        return "done"

    assert bar.during(BASE_EVAL, evaluate) == "done"
    with bar:
        clock.now += 10.0
        bar.update(1, RECORD)
        assert "train" in bar.line() and BASE_EVAL not in bar.line()
        assert "0:00:30" in bar.line()  # 3 steps x 10 s: the evaluation's 50 s are not a step's
    assert BASE_EVAL in seen[0] and "0/4" in seen[0]


def test_eta_arithmetic() -> None:
    assert eta_seconds(3, 40.0, 10.0) == 110.0 and eta_seconds(1, 5.0, 9.0) == 0.0
    assert format_eta(3725.9) == "1:02:05"
