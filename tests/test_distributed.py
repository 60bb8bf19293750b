"""Two processes over gloo on CPU give the run one process gives, and survive kill -9 of either rank.

Marked `distributed` (excluded by default; CI runs `pytest -m distributed`): each check launches torchrun.
Same global batch (batch_size x grad_accum) in both layouts, fp32, no dropout: the only difference left is
float summation order, so losses and weights agree to 1e-4; resuming a killed 2-process run is compared
bit for bit with an uninterrupted 2-process run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.test_train import tiny_setup  # noqa: F401  (fixture)
from tunesmith.runs.metrics import read_metrics
from tunesmith.train.checkpoint import latest_checkpoint

pytestmark = pytest.mark.distributed
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
TOLERANCE = 1e-4


def write_recipe(tiny_setup, folder: Path, adapter: str) -> Path:
    model, data = tiny_setup
    recipe = folder / f"{adapter}.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": adapter, "model": str(model), "adapter": adapter, "output": str(folder / "runs"),
        "data": {"train": str(data), "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-2 if adapter != "full" else 1e-3, "max_steps": 5, "batch_size": 4, "grad_accum": 2,
                  "max_seq_len": 64, "mixed_precision": "no", "max_grad_norm": 1.0, "seed": 0, "threads": 1,
                  "save_every": 1, "keep_checkpoints": 2},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0},
    }))
    return recipe


def tunesmith(*args: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [*(launcher or [sys.executable, "-m"]), *(["tunesmith"] if launcher is None else []), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=ENV, timeout=600)


def trained(recipe: Path, name: str, *extra: str) -> Path:
    result = tunesmith("train", str(recipe), f"name={name}", *extra)
    assert result.returncode == 0, result.stderr[-4000:]
    run = recipe.parent / "runs" / name
    (run / "train.log").write_text(result.stderr)
    return run


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r.get("loss", r.get("eval_loss"))) for r in read_metrics(run / "metrics.jsonl")]


def weights(run: Path) -> dict[str, torch.Tensor]:
    folder = run / ("model" if (run / "model").is_dir() else "adapter")
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def max_difference(one: Path, two: Path) -> tuple[float, float]:
    a, b = losses(one), losses(two)
    assert [s for s, _ in a] == [s for s, _ in b]  # the same records, each written once
    units = [[r.get("units") for r in read_metrics(run / "metrics.jsonl")] for run in (one, two)]
    assert units[0] == units[1]  # the ranks shared the step's micro-batches, not each took all of them
    loss_gap = max(abs(x - y) for (_, x), (_, y) in zip(a, b))
    wa, wb = weights(one), weights(two)
    assert wa.keys() == wb.keys() and wa
    return loss_gap, max((wa[k] - wb[k]).abs().max().item() for k in wa)


@pytest.fixture(scope="module")
def lora_runs(tiny_setup, tmp_path_factory) -> tuple[Path, Path]:
    recipe = write_recipe(tiny_setup, tmp_path_factory.mktemp("lora"), "lora")
    return trained(recipe, "one"), trained(recipe, "two", "--nproc", "2")


@pytest.fixture(scope="module")
def fsdp2_lora_run(lora_runs) -> Path:
    """The LoRA recipe under fsdp2, 2 processes, in the same folder as `lora_runs`."""
    recipe = lora_runs[0].parent.parent / "lora.yaml"
    return trained(recipe, "fsdp2", "distributed.strategy=fsdp2", "--nproc", "2")


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_two_processes_train_like_one(adapter, lora_runs, tiny_setup, tmp_path) -> None:
    if adapter == "lora":
        one, two = lora_runs
    else:
        recipe = write_recipe(tiny_setup, tmp_path, adapter)
        one, two = trained(recipe, "one"), trained(recipe, "two", "--nproc", "2")
    loss_gap, weight_gap = max_difference(one, two)
    print(f"{adapter}: ddp 2 processes vs 1: max |loss diff| {loss_gap:.2e}, max |weight diff| {weight_gap:.2e}")
    assert loss_gap <= TOLERANCE and weight_gap <= TOLERANCE
    rng = torch.load(latest_checkpoint(two) / "rng.pt", weights_only=True)
    assert len(rng["per_rank"]) == 2  # every rank's generators, not only the main one's
    assert json.loads((two / "run.json").read_text())["status"] == "done"


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_fsdp2_shards_and_trains_like_one_process(adapter, lora_runs, fsdp2_lora_run, tiny_setup, tmp_path) -> None:
    if adapter == "lora":
        one, sharded = lora_runs[0], fsdp2_lora_run
    else:
        recipe = write_recipe(tiny_setup, tmp_path, adapter)
        one, sharded = trained(recipe, "one"), trained(recipe, "fsdp2", "distributed.strategy=fsdp2", "--nproc", "2")
    log = (sharded / "train.log").read_text()
    assert "parameters sharded over 2 processes (checked)" in log
    loss_gap, weight_gap = max_difference(one, sharded)
    print(f"{adapter}: fsdp2 2 processes vs 1: max |loss diff| {loss_gap:.2e}, max |weight diff| {weight_gap:.2e}")
    assert loss_gap <= TOLERANCE and weight_gap <= TOLERANCE


def test_grad_accum_not_divisible_by_processes_is_a_clear_error(tiny_setup, tmp_path) -> None:
    recipe = write_recipe(tiny_setup, tmp_path, "lora")
    result = tunesmith("train", str(recipe), "train.grad_accum=3", "--nproc", "2")
    assert result.returncode != 0 and "multiple of 2" in result.stderr


# Mid-epoch: write_recipe's run trains on 216 rows (240 less the 10% held out), one packed row each at
# max_seq_len 64, so an epoch is 54 micro-batches of 4, 27 steps of 2; the kills (as step 3 begins, and while
# step 4's checkpoint is written) and the whole 5-step run lie inside the first epoch.
@pytest.mark.parametrize("strategy, rank, kill_at", [("ddp", 1, "step:3"), ("ddp", 0, "save:4"),
                                                     ("fsdp2", 1, "step:3")])
def test_kill_minus_9_then_resume_is_bit_identical(strategy, rank, kill_at, request) -> None:
    straight = request.getfixturevalue("lora_runs")[1] if strategy == "ddp" else request.getfixturevalue(
        "fsdp2_lora_run")
    recipe = Path(straight.parent.parent / "lora.yaml")
    name = f"killed-{strategy}-{rank}-{kill_at.replace(':', '')}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                str(REPO / "tests" / "helpers" / "kill_rank.py")]
    env = {**ENV, "KILL_RANK": str(rank), "KILL_AT": kill_at}
    killed = subprocess.run([*torchrun, "train", str(recipe), f"name={name}", f"distributed.strategy={strategy}"],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert killed.returncode != 0
    run = recipe.parent / "runs" / name
    assert not (run / "adapter").exists() and latest_checkpoint(run) is not None
    resumed = trained(recipe, name, f"distributed.strategy={strategy}", "--resume", "--nproc", "2")
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(straight) == losses(resumed)
    assert json.loads((resumed / "run.json").read_text())["status"] == "done"
