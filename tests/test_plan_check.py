"""The time estimate: probed in the dtype the run computes in (the trainer's rule), honouring train.max_steps;
and a finished run records the plan's prediction beside what it measured (run.json `state.plan_check`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from tests.test_plan import tiny_full_recipe
from tunesmith.cli import app
from tunesmith.models import load as models
from tunesmith.plan import hardware
from tunesmith.plan.memory import TrainSetup
from tunesmith.plan.setup import compute_dtype
from tunesmith.plan.shape import shape_from_count
from tunesmith.plan.timing import DataSize, estimate_time
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs import read_run
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train import accelerator as precision
from tunesmith.train import loop
from tunesmith.train.plan_check import typical_step
from tunesmith.train.progress import BASE_EVAL, TrainProgress


def _recipe(adapter: str = "lora", **train: Any) -> Any:
    return recipe_from_dict({"name": "t", "model": "m", "adapter": adapter, "data": {"train": "d.jsonl"},
                             "train": {"batch_size": 8, "max_seq_len": 128, **train}})


def test_the_probe_dtype_is_the_one_the_run_computes_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU without native bf16 trains fp32 (auto), so the probe must be fp32, not an emulated bf16 matmul."""
    for module in (models, precision):
        monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: False)
    assert compute_dtype(_recipe("lora")) == torch.float32 and compute_dtype(_recipe("full")) == torch.float32
    for module in (models, precision):
        monkeypatch.setattr(module, "cpu_has_native_bf16", lambda: True)
    assert compute_dtype(_recipe("full")) == torch.bfloat16  # fp32 masters under bf16 autocast
    assert compute_dtype(_recipe("full", mixed_precision="no")) == torch.float32
    assert compute_dtype(recipe_from_dict({"name": "t", "model": "m", "data": {"train": "d"},
                                           "model_options": {"dtype": "fp32"},
                                           "train": {"mixed_precision": "no"}})) == torch.float32


def test_plan_cli_probes_in_the_runs_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[torch.dtype] = []
    monkeypatch.setattr(hardware, "matmul_rate", lambda seconds, dtype: probed.append(dtype) or 1e10)
    recipe = tiny_full_recipe(tmp_path, "{batch_size: 2, max_seq_len: 64, mixed_precision: 'no', max_steps: 7}")
    result = CliRunner().invoke(app, ["plan", str(recipe)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert probed == [torch.float32]
    assert "from a fp32 matmul probe" in result.output and "(7 steps, train.max_steps)" in result.output


def test_time_honours_max_steps() -> None:
    setup = TrainSetup(shape=shape_from_count(100_000_000), micro_batch=8, seq_len=128)
    size = DataSize(tokens=128 * 800, samples=2000)
    epochs = estimate_time(_recipe(epochs=2), setup, size, 1e11)
    capped = estimate_time(_recipe(max_steps=3), setup, size, 1e11)
    assert epochs.epoch_steps == 100 and epochs.steps == 200 and not epochs.max_steps
    assert capped.steps == 3 and capped.max_steps and capped.run_seconds == pytest.approx(3 * capped.step_seconds)
    assert capped.step_seconds == pytest.approx(epochs.step_seconds)


def test_typical_step_leaves_out_the_first() -> None:
    assert typical_step([9.0, 1.0, 2.0]) == 1.5 and typical_step([4.0]) == 4.0 and typical_step([]) is None


def test_a_run_records_the_plan_beside_what_it_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = make_rows(120, BASE_SKILLS, seed=3)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = save_tiny("llama", tmp_path / "base", vocab_size=300, texts=[r["instruction"] for r in rows])
    labels: list[str] = []

    class Recording(TrainProgress):
        def during(self, description: str, work: Any) -> Any:
            return super().during(description, lambda: (labels.append(description), work())[1])

    monkeypatch.setattr(loop, "TrainProgress", Recording)
    recipe = recipe_from_dict({"name": "t", "model": str(model), "adapter": "lora", "output": str(tmp_path / "runs"),
                               "data": {"train": str(data), "eval": 0.1, "template": "plain"},
                               "train": {"max_steps": 3, "batch_size": 4, "max_seq_len": 64}})
    run = loop.train(recipe)
    assert labels == [BASE_EVAL]  # the evaluation before step 1 ran under its label
    check = read_run(run.path).state["plan_check"]  # what the runs/ reader accepts
    assert check["measured"]["steps"] == 3 and check["measured"]["step_seconds"] > 0
    assert check["predicted"]["peak_memory_mib"] > 100 and check["predicted"]["step_seconds"] > 0
    assert check["probe_dtype"] == hardware.dtype_name(compute_dtype(recipe))
    assert check["ratio"]["peak_memory_mib"] == pytest.approx(
        check["measured"]["peak_memory_mib"] / check["predicted"]["peak_memory_mib"], rel=1e-2)
    steps = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if "step_seconds" in r] == [1, 2, 3]
