"""Overfitting detection during training, through the real `train()` on a tiny Llama.

Planted overfitting: 16 rows whose answers are random words (nothing to generalise), many steps at a high
constant learning rate; train loss keeps falling while held-out loss turns up, so the alarm fires and
`train.early_stop` ends the run, keeping the best checkpoint. Healthy: answers follow a rule (repeat the
words), so held-out loss falls with train loss and the alarm stays silent.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunesmith.errors import UserError
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.demo import WORDS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import train


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _random_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"instruction": " ".join(rng.sample(WORDS, 3)), "input": "", "output": " ".join(rng.sample(WORDS, 4))}
            for _ in range(n)]


@pytest.fixture
def tiny(tmp_path) -> Path:
    corpus = [f"{r['instruction']}\n{r['output']}" for r in make_rows(100, ("Repeat the words",), seed=3)]
    return save_tiny("llama", tmp_path / "tiny", vocab_size=320, texts=corpus + ["User: Assistant: "])


def _recipe(name: str, model: Path, data: Path, out: Path, eval_fraction: float, lr: float, steps: int):
    return recipe_from_dict({
        "name": name, "model": str(model), "adapter": "full", "output": str(out),
        "data": {"train": str(data), "eval": eval_fraction, "template": "plain"},
        "train": {"lr": lr, "max_steps": steps, "batch_size": 4, "max_seq_len": 64, "scheduler": "constant",
                  "warmup_ratio": 0.0, "mixed_precision": "no", "eval_every": 3, "patience": 3,
                  "early_stop": True, "save_every": 3, "keep_checkpoints": 1},
        "model_options": {"dtype": "fp32"},
    }, source="test")


def test_planted_overfitting_stops_early_and_keeps_the_best_checkpoint(tiny, tmp_path):
    data = _write(tmp_path / "random.jsonl", _random_rows(24, seed=1))
    run = train(_recipe("over", tiny, data, tmp_path, eval_fraction=0.34, lr=1e-2, steps=200)).path
    record = json.loads((run / "run.json").read_text())
    final, state = record["final"], record["state"]
    assert record["status"] == "done" and state["step"] < 200  # stopped long before max_steps
    assert "train.early_stop at step" in final["stopped_early"] and "memorising" in final["stopped_early"]
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in r]
    best = min(evals, key=lambda r: r["eval_loss"])
    assert final["best_step"] == best["step"] < state["step"]
    assert final["best_eval_loss"] == pytest.approx(best["eval_loss"])
    after = [r["eval_loss"] for r in evals if r["step"] > best["step"]]
    assert len(after) >= 3 and min(after) > best["eval_loss"]  # patience: at least 3 evaluations, none better
    assert after[-1] > 1.01 * best["eval_loss"]  # held-out loss really turned up
    assert final["best_checkpoint"] == str(run / "checkpoints" / f"step-{best['step']}")
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert f"step-{best['step']}" in kept and len(kept) == 2  # keep_checkpoints: 1, plus the protected best
    assert [r["step"] for r in evals].count(state["step"]) == 1  # the final evaluation is not repeated
    assert (run / "model" / "config.json").is_file()


def test_healthy_run_does_not_stop(tiny, tmp_path):
    data = _write(tmp_path / "repeat.jsonl", make_rows(200, ("Repeat the words",), seed=3))
    run = train(_recipe("healthy", tiny, data, tmp_path, eval_fraction=0.1, lr=3e-3, steps=30)).path
    record = json.loads((run / "run.json").read_text())
    assert record["state"]["step"] == 30 and record["final"]["stopped_early"] is None
    assert "overfitting" not in record["state"]
    assert record["final"]["best_step"] == 30 and record["final"]["best_checkpoint"] == str(run / "model")


def test_early_stop_needs_patience_and_eval_every():
    with pytest.raises(UserError, match="train.early_stop needs train.patience"):
        recipe_from_dict({"name": "x", "model": "m", "data": {"train": "t.jsonl"},
                          "train": {"early_stop": True, "patience": 2}})
