"""`tunesmith plan` against measured runs on a real model given as a GGUF file (SmolLM2-135M-Instruct): for
LoRA, QLoRA and full fine-tuning at batch 8 x 128 tokens, 3 steps, the planned peak memory is within 15% of
the run's peak resident set and the planned time per step within 2x of the measured one.

Each run is its own `tunesmith train` process (peak RSS is per process). The time prediction compared is the
one the run wrote into run.json (`state.plan_check`): the planner's, probed right after the steps on the same
busy machine, so the check is of the model, not of how loaded the CPU was an hour earlier. Slow: three real
trainings (minutes each on 2 cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, SMOLLM2
from tunesmith.data.cache import CACHE_ENV
from tunesmith.plan.hardware import MIB, cpu_device
from tunesmith.plan.run import plan_recipe, size_of
from tunesmith.recipe.spec import load_recipe
from tunesmith.runs import read_run

pytestmark = pytest.mark.slow
ALPACA = DATA / "alpaca_1k.jsonl"


@pytest.mark.parametrize("adapter", ["lora", "qlora", "full"])
def test_plan_predicts_a_measured_smollm2_run(adapter: str, smollm2_gguf_cache: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if not ALPACA.is_file():
        pytest.skip(f"real data set not found at {ALPACA} (the shared folder beside the checkout)")
    recipe = tmp_path / f"{adapter}.yaml"
    recipe.write_text(f"name: {adapter}\nmodel: {SMOLLM2}\nadapter: {adapter}\noutput: {tmp_path / 'runs'}\n"
                      f"data: {{train: {ALPACA}, eval: 0.02}}\ntrain: {{batch_size: 8, max_seq_len: 128, max_steps: 3}}\n")
    monkeypatch.setenv(CACHE_ENV, str(smollm2_gguf_cache))  # the session's conversion, for the run and the plan
    done = subprocess.run([sys.executable, "-m", "tunesmith", "train", str(recipe)], capture_output=True, text=True,
                          timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = read_run(tmp_path / "runs" / adapter)
    check = run.state["plan_check"]
    # what `tunesmith plan RECIPE` predicts: the shape read through the GGUF, the run's data size
    planned = plan_recipe(load_recipe(recipe), cpu_device(probe=False), size=size_of(run.data)).chosen.total
    measured = check["measured"]["peak_memory_mib"]
    assert check["predicted"]["peak_memory_mib"] == pytest.approx(planned / MIB, rel=0.01)
    assert 0.85 <= measured / (planned / MIB) <= 1.15, (adapter, measured, planned / MIB)
    assert 0.5 <= check["ratio"]["step_seconds"] <= 2.0, (adapter, check)
