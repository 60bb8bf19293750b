"""Metrics file, loss plot and overfitting alarm."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tunesmith.errors import DataError, UserError
from tunesmith.runs.metrics import MetricsLog, read_metrics
from tunesmith.train.monitor import detect_overfitting, plot_losses, smooth


def test_metrics_log_appends_flushed_lines_and_keeps_series(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.log({"step": 1, "loss": 2.5, "lr": 1e-4})
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.5, "lr": 1e-4}
    log.log({"step": 2, "loss": 2.0})
    log.log({"step": 2, "eval_loss": 2.2})
    assert log.trains == [(1, 2.5), (2, 2.0)]
    assert log.evals == [(2, 2.2)]
    assert read_metrics(tmp_path / "metrics.jsonl") == log.records


def test_resume_reloads_and_truncates_records_past_the_checkpoint(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    for step in range(1, 7):
        log.log({"step": step, "loss": 1.0 / step})
        if step % 2 == 0:
            log.log({"step": step, "eval_loss": 2.0 / step})
    resumed = MetricsLog(tmp_path)
    assert resumed.records == log.records
    resumed.truncate_after(4)
    assert [step for step, _ in resumed.trains] == [1, 2, 3, 4]
    assert [step for step, _ in resumed.evals] == [2, 4]
    resumed.log({"step": 5, "loss": 0.3})
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 2, 3, 4, 4, 5]


def test_a_line_cut_by_a_crash_is_dropped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    log = MetricsLog(tmp_path)
    assert log.records == [{"step": 1, "loss": 2.0}]
    log.log({"step": 2, "loss": 1.5})
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def test_a_broken_line_in_the_middle_is_reported_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\nnot json\n{"step": 2, "loss": 1.5}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not a metrics record"):
        read_metrics(path)
    path.write_text('{"step": 1, "loss": 2.0}\n{"loss": 1.5}\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not a metrics record"):
        read_metrics(path)
    with pytest.raises(UserError, match="no metrics file"):
        read_metrics(tmp_path / "missing.jsonl")


def test_records_need_an_integer_step(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="integer 'step'"):
        MetricsLog(tmp_path).log({"loss": 1.0})


def test_smooth_is_debiased_and_follows_a_constant() -> None:
    assert smooth([3.0] * 50, weight=0.9) == pytest.approx([3.0] * 50)
    assert smooth([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]  # a short series is left as it is


def noisy_run(
    steps: int, train: Callable[[int], float], eval_every: int, evaluate: Callable[[int], float]
) -> list[dict]:
    rng = random.Random(0)
    records = []
    for step in range(1, steps + 1):
        records.append({"step": step, "loss": train(step) + rng.gauss(0, 0.05)})
        if step % eval_every == 0:
            records.append({"step": step, "eval_loss": evaluate(step)})
    return records


def test_plot_losses_writes_a_readable_png(tmp_path: Path) -> None:
    records = noisy_run(300, lambda s: 3 * math.exp(-s / 80) + 1, 30, lambda s: 3 * math.exp(-s / 80) + 1.2)
    out = plot_losses(records, tmp_path / "plots" / "loss.png", title="tiny run")
    assert out == tmp_path / "plots" / "loss.png"
    assert out.stat().st_size > 20_000
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (960, 540)
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50  # lines, text, not a blank page


def test_plot_losses_with_nothing_logged_still_writes_a_figure(tmp_path: Path) -> None:
    out = plot_losses([], tmp_path / "loss.png")
    with Image.open(out) as image:
        assert image.size == (960, 540)


def series(records: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in records if key in r]


def overfit(step: int) -> float:
    """Eval loss falls until step 100, then climbs."""
    return 2.0 - step / 200 if step <= 100 else 1.5 + (step - 100) / 100


def test_planted_overfitting_is_reported_with_the_best_step() -> None:
    records = noisy_run(200, lambda s: 3.0 - s / 100, 20, overfit)
    warning = detect_overfitting(series(records, "eval_loss"), series(records, "loss"), patience=3)
    assert warning is not None
    assert "best 1.5000 at step 100" in warning and "not improved for 5 evaluations" in warning


def test_patience_is_counted_in_evaluations_since_the_best() -> None:
    records = noisy_run(160, lambda s: 3.0 - s / 100, 20, overfit)  # 3 evaluations after the best
    evals, trains = series(records, "eval_loss"), series(records, "loss")
    assert detect_overfitting(evals, trains, patience=3) is not None
    assert detect_overfitting(evals, trains, patience=4) is None


def test_healthy_run_is_not_reported() -> None:
    records = noisy_run(200, lambda s: 3.0 - s / 100, 20, lambda s: 3.2 - s / 110)
    assert detect_overfitting(series(records, "eval_loss"), series(records, "loss"), patience=2) is None


def test_plateau_of_both_losses_is_not_reported() -> None:
    """Converged: eval wobbles without a new best, but train is flat too, so nothing is memorised."""
    rng = random.Random(1)
    records = noisy_run(200, lambda s: 1.0, 10, lambda s: 1.2 + rng.uniform(0, 0.01))
    records.insert(1, {"step": 1, "eval_loss": 1.19})  # an early best no later evaluation beats
    evals, trains = series(records, "eval_loss"), series(records, "loss")
    assert min(evals, key=lambda e: e[1])[0] == 1
    assert detect_overfitting(evals, trains, patience=3) is None


def test_invalid_patience_is_rejected() -> None:
    with pytest.raises(ValueError, match="patience"):
        detect_overfitting([(1, 1.0)], [(1, 1.0)], patience=0)
