"""Two processes, beyond SFT: a run killed under one process count resumes under another, and DPO's pairs
are shared out between ranks like SFT's rows. Marked `distributed` (run with `pytest -m distributed`).

Resuming across counts works because the batch plan is the one plan of a single process (each rank takes its
share of every step's micro-batches) and every rank's RNG is in the checkpoint (a rank beyond the saved ones
takes rank r mod saved). With no dropout the result equals the uninterrupted run's up to summation order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_distributed import ENV, REPO, TOLERANCE, max_difference, trained, write_recipe
from tests.test_train import tiny_setup  # noqa: F401  (fixture)
from tunesmith.train.checkpoint import latest_checkpoint

pytestmark = pytest.mark.distributed


def killed_at_step(recipe: Path, name: str, processes: int, step: int) -> Path:
    """Run `recipe` under `processes` processes and SIGKILL rank 0 as optimizer step `step` begins."""
    helper = str(REPO / "tests" / "helpers" / "kill_rank.py")
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", helper]
                if processes > 1 else [sys.executable, helper])
    env = {**ENV, "KILL_RANK": "0", "KILL_AT": f"step:{step}"}
    result = subprocess.run([*launcher, "train", str(recipe), f"name={name}"], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=600)
    assert result.returncode != 0, "the run was meant to die"
    run = recipe.parent / "runs" / name
    assert latest_checkpoint(run) is not None and not (run / "adapter").exists()
    return run


@pytest.mark.parametrize("killed_with, resumed_with", [(2, 1), (1, 2)])
def test_a_killed_run_resumes_under_another_process_count(tiny_setup, tmp_path, killed_with, resumed_with) -> None:
    recipe = write_recipe(tiny_setup, tmp_path, "lora")
    straight = trained(recipe, "straight")
    name = f"killed-{killed_with}-resumed-{resumed_with}"
    killed_at_step(recipe, name, killed_with, 4)
    resumed = trained(recipe, name, "--resume", *(["--nproc", str(resumed_with)] if resumed_with > 1 else []))
    loss_gap, weight_gap = max_difference(straight, resumed)
    print(f"killed under {killed_with}, resumed under {resumed_with} process(es) vs straight 1: "
          f"max |loss diff| {loss_gap:.2e}, max |weight diff| {weight_gap:.2e}")
    assert loss_gap <= TOLERANCE and weight_gap <= TOLERANCE
    assert json.loads((resumed / "run.json").read_text())["status"] == "done"


def test_dpo_two_processes_train_like_one(tmp_path) -> None:
    from tunesmith.testing.tiny import save_tiny

    words = ("cat", "dog", "sun", "tree", "ball", "bird", "fish", "hat")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Say {w} {i}", "chosen": f"{w} is good.",
                                         "rejected": f"No {w} here"}) + "\n" for i in range(3) for w in words))
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "dpo", "model": str(save_tiny("llama", tmp_path / "base", vocab_size=300)), "method": "dpo",
        "adapter": "lora", "output": str(tmp_path / "runs"),
        "data": {"train": str(pairs), "eval": 0.25, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 4, "batch_size": 2, "grad_accum": 2, "max_seq_len": 64,
                  "mixed_precision": "no", "seed": 0, "threads": 1, "save_every": 2},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0},
    }))
    one, two = trained(recipe, "one"), trained(recipe, "two", "--nproc", "2")
    loss_gap, weight_gap = max_difference(one, two)
    print(f"dpo: 2 processes vs 1: max |loss diff| {loss_gap:.2e}, max |weight diff| {weight_gap:.2e}")
    assert loss_gap <= TOLERANCE and weight_gap <= TOLERANCE
    rng = torch.load(latest_checkpoint(two) / "rng.pt", weights_only=True)
    assert len(rng["per_rank"]) == 2, "the run really had two ranks (each saved its generators)"
