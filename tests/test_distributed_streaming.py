"""`data.streaming: true` under two processes: the ranks share each step's micro-batches of the one stream as
they share a fixed plan's, so two processes train as one does, and a rank killed with SIGKILL mid-stream
resumes bit for bit. The launch tests are marked `distributed` (run with `pytest -m distributed`).

The stream is a folder of local JSON Lines shards (`memory://` belongs to one process, so ranks could not
share it). Small windows (`data.shuffle_buffer`) and shards make the kill's checkpoint land inside a window,
and the rest of the run cross into another shard. Same global batch in both layouts, fp32, no dropout: the
one-process comparison differs only by float summation order (DDP averages gradients over ranks), hence
`TOLERANCE` (1e-4); resuming is compared bit for bit with the uninterrupted two-process run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_distributed import ENV, REPO, TOLERANCE, losses, max_difference, trained, weights
from tests.test_distributed_resume import killed_at_step
from tests.test_train import tiny_setup  # noqa: F401  (fixture)
from tunesmith.errors import UserError
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.stream_plan import same_on_every_rank

SHARDS, ROWS_PER_SHARD = 4, 12


def streamed_recipe(tiny_setup, folder: Path) -> Path:
    """The first SHARDS x ROWS_PER_SHARD rows of the tiny data as shard files, streamed 7 rows a window."""
    model, data = tiny_setup
    rows = data.read_text().splitlines(keepends=True)
    shards = folder / "shards"
    shards.mkdir()
    for k in range(SHARDS):
        (shards / f"part-{k:02d}.jsonl").write_text("".join(rows[k * ROWS_PER_SHARD:(k + 1) * ROWS_PER_SHARD]))
    recipe = folder / "streamed.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "streamed", "model": str(model), "adapter": "lora", "output": str(folder / "runs"),
        "data": {"train": str(shards), "template": "plain", "streaming": True, "shuffle_buffer": 7},
        "train": {"lr": 1e-2, "max_steps": 8, "batch_size": 2, "grad_accum": 2, "max_seq_len": 64,
                  "mixed_precision": "no", "max_grad_norm": 1.0, "seed": 0, "threads": 1,
                  "save_every": 1, "keep_checkpoints": 2},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0},
    }))
    return recipe


def position(folder: Path) -> dict[str, int]:
    """The stream position a checkpoint (trainer_state.json) or a finished run (run.json) recorded."""
    state = folder / "trainer_state.json"
    raw = json.loads(state.read_text()) if state.exists() else json.loads((folder / "run.json").read_text())["state"]
    return raw["data_position"]


@pytest.fixture(scope="module")
def streamed_runs(tiny_setup, tmp_path_factory) -> tuple[Path, Path]:
    recipe = streamed_recipe(tiny_setup, tmp_path_factory.mktemp("streamed"))
    return trained(recipe, "one"), trained(recipe, "two", "--nproc", "2")


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_processes_stream_like_one(strategy, streamed_runs) -> None:
    one, two = streamed_runs
    if strategy == "fsdp2":
        two = trained(one.parent.parent / "streamed.yaml", "fsdp2", "distributed.strategy=fsdp2", "--nproc", "2")
        assert "parameters sharded over 2 processes (checked)" in (two / "train.log").read_text()
    loss_gap, weight_gap = max_difference(one, two)  # also: the same units per step (each rank took its share)
    print(f"streamed: {strategy} 2 processes vs 1: max |loss diff| {loss_gap:.2e}, max |weight diff| {weight_gap:.2e}")
    assert loss_gap <= TOLERANCE and weight_gap <= TOLERANCE
    assert position(one) == position(two)  # the one global position, not a rank's own
    assert position(two)["shard"] > 0 or position(two)["epoch"] > 0, "the run was meant to read several shards"
    assert json.loads((two / "run.json").read_text())["status"] == "done"


@pytest.mark.distributed
@pytest.mark.parametrize("rank", [1])
def test_kill_minus_9_mid_stream_then_resume_is_bit_identical(rank, streamed_runs) -> None:
    straight = streamed_runs[1]
    recipe = straight.parent.parent / "streamed.yaml"
    name = f"killed-{rank}"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                str(REPO / "tests" / "helpers" / "kill_rank.py")]
    env = {**ENV, "KILL_RANK": str(rank), "KILL_AT": "step:3"}
    killed = subprocess.run([*torchrun, "train", str(recipe), f"name={name}"], capture_output=True, text=True,
                            cwd=REPO, env=env, timeout=600)
    assert killed.returncode != 0
    run = recipe.parent / "runs" / name
    checkpoint = latest_checkpoint(run)
    assert not (run / "adapter").exists() and checkpoint is not None and checkpoint.name == "step-2"
    at = position(checkpoint)
    assert at["used"] > 0, f"the kill was meant to land inside a window: {at}"
    resumed = trained(recipe, name, "--resume", "--nproc", "2")
    print(f"streamed: killed at step 3, resumed from {at}, finished at {position(resumed)}")
    assert (position(resumed)["epoch"], position(resumed)["shard"]) > (at["epoch"], at["shard"]), \
        "the resumed run was meant to go on into another shard"
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses(straight) == losses(resumed)
    assert json.loads((resumed / "run.json").read_text())["status"] == "done"


@pytest.mark.distributed
def test_a_stream_killed_under_one_process_resumes_under_two(streamed_runs) -> None:
    """The saved position is the stream's, not a rank's: two processes go on from one process's checkpoint."""
    one = streamed_runs[0]
    recipe = one.parent.parent / "streamed.yaml"
    run = killed_at_step(recipe, "killed-alone", 1, 3)
    at = position(latest_checkpoint(run))
    resumed = trained(recipe, "killed-alone", "--resume", "--nproc", "2")
    loss_gap, weight_gap = max_difference(one, resumed)
    print(f"streamed: killed under 1 process at {at}, resumed under 2 vs straight 1: max |loss diff| "
          f"{loss_gap:.2e}, max |weight diff| {weight_gap:.2e}")
    assert loss_gap <= TOLERANCE and weight_gap <= TOLERANCE
    assert position(resumed) == position(one)


def test_ranks_at_different_stream_positions_are_an_error() -> None:
    here = {"epoch": 0, "shard": 1, "offset": 0, "line": 0, "used": 3}
    assert same_on_every_rank([here, dict(here)], step=4) == here
    with pytest.raises(UserError, match=r"data.train: .*different streams.*rank 1"):
        same_on_every_rank([here, {**here, "used": 1}], step=4)
