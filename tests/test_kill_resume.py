"""`kill -9` in the middle of an epoch, then `tunesmith train --resume`: the run goes on from its last
checkpoint over the prepared-data store and logs, step for step, the losses of a run never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.checkpoint import latest_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _recipe(tmp: Path, model: Path, data: Path, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "model": str(model), "output": str(tmp / "runs"),
        "data": {"train": str(data), "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 40, "batch_size": 2, "max_seq_len": 64, "mixed_precision": "no",
                  "save_every": 4, "seed": 0, "threads": 1},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.1},
    }))
    return path


def _train(recipe: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunesmith", "train", str(recipe), *extra], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r}


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_from_the_store_gives_the_same_losses(tmp_path: Path) -> None:
    rows = make_rows(240, BASE_SKILLS, seed=3)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = save_tiny("llama", tmp_path / "base", vocab_size=300, texts=[f"{r['instruction']}\n{r['output']}" for r in rows[:100]])
    env = {**os.environ, "PYTHONPATH": str(REPO), "TUNESMITH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    straight = _train(_recipe(tmp_path, model, data, "straight"), env)
    assert straight.wait(timeout=600) == 0, straight.stderr.read()
    assert any((tmp_path / "cache" / "data").iterdir())  # the runs read their samples from the store

    recipe = _recipe(tmp_path, model, data, "killed")
    run = tmp_path / "runs" / "killed"
    victim = _train(recipe, env)
    try:
        deadline = time.monotonic() + 600
        while victim.poll() is None and time.monotonic() < deadline:
            checkpoint = latest_checkpoint(run)
            if checkpoint is not None and int(checkpoint.name.split("-")[1]) >= 8:
                break
            time.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    killed_at = max(_losses(run))
    assert 8 <= killed_at < 40
    resumed = _train(recipe, env, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    reference = _losses(tmp_path / "runs" / "straight")
    assert sorted(reference) == list(range(1, 41))
    assert _losses(run) == reference  # every step, bit for bit (JSON floats of the same doubles)
