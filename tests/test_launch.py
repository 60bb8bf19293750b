"""`tunesmith train --nproc N` (train/launch.py, train/stop_request.py): the ranks share the launcher's process
group, so one signal to the group reaches every rank, and a stop keeps one checkpoint every rank agreed on; a
layout the processes cannot share is refused once, before anything is launched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.testing.tiny import save_tiny
from tunesmith.train import launch
from tunesmith.train.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LoRA run long enough to be stopped in the middle (500 steps, no scheduled checkpoint)."""
    root = tmp_path_factory.mktemp("launch")
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"number {i} " * 5}) + "\n"
                            for i in range(200)))
    model = save_tiny("llama", root / "base", vocab_size=300)
    path = root / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "n", "model": str(model), "output": str(root / "runs"),
        "data": {"train": str(data), "eval": 0.0, "template": "plain"},
        "train": {"lr": 1e-3, "max_steps": 500, "batch_size": 2, "grad_accum": 2, "max_seq_len": 64,
                  "mixed_precision": "no", "threads": 1, "save_every": 1000},
        "model_options": {"dtype": "fp32"}}))
    return path


def test_ranks_run_tunesmith_itself_with_torchruns_environment() -> None:
    command = launch.launch_command(launch.strip_nproc(["train", "r.yaml", "--nproc", "2", "--resume"]))
    assert command == [sys.executable, "-m", "tunesmith", "train", "r.yaml", "--resume"]
    envs = launch.rank_environments(2, 29555)
    assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["MASTER_PORT"]) for e in envs] == \
        [("0", "0", "2", "29555"), ("1", "1", "2", "29555")]


def test_one_failing_rank_stops_the_others_and_gives_the_status(tmp_path: Path) -> None:
    def rank(code: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code])

    waiting = rank("import time; time.sleep(120)")  # as a rank blocked in a collective with the failed one
    started = time.monotonic()
    assert launch._supervise([rank("raise SystemExit(3)"), waiting]) == 3
    assert waiting.returncode == -signal.SIGTERM and time.monotonic() - started < 60
    assert launch._supervise([rank("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
                              rank("import time; time.sleep(120)")]) == 128 + signal.SIGKILL
    assert launch._supervise([rank("raise SystemExit(130)"), rank("import time; time.sleep(1)")]) == 130


def test_a_layout_the_processes_cannot_share_fails_once_before_launching(recipe: Path, monkeypatch) -> None:
    def no_launch(nproc: int, argv: list[str]) -> int:
        raise AssertionError("processes were launched for a recipe they cannot share")

    monkeypatch.setattr(launch, "relaunch", no_launch)
    result = CliRunner().invoke(app, ["train", str(recipe), "train.grad_accum=3", "--nproc", "2"],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), "a traceback, not one message"
    assert result.stderr.count("multiple of 2") == 1, result.stderr
    assert not (recipe.parent / "runs" / "n").exists()


def _rank_groups(launcher: int) -> dict[int, int]:
    """pid -> process group of each rank the launcher started."""
    groups = {}
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split() if proc.name.isdigit() else []
        except OSError:
            continue
        if fields and int(fields[1]) == launcher:
            groups[int(proc.name)] = int(fields[2])
    return groups


def _environment(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.distributed
def test_ranks_share_the_group_and_stop_together_at_one_checkpoint(recipe: Path) -> None:
    run = recipe.parent / "runs" / "n"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "tunesmith", "train", str(recipe), "--nproc", "2"], cwd=REPO,
                                env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    ranks: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _trained_steps(run):
            time.sleep(0.5)
        ranks = _rank_groups(launcher.pid)
        assert len(ranks) == 2 and set(ranks.values()) == {launcher.pid}, ranks  # the launcher's own group
        # Ctrl-C and the dashboard's Stop signal the whole group; here the signal reaches one rank alone (as it
        # can reach one rank steps before another): the other ranks must stop after the same step with it.
        os.kill(next(pid for pid in ranks if "RANK=1" in _environment(pid)), signal.SIGINT)
        output = launcher.communicate(timeout=240)[0]
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
        for pid in ranks:  # ranks that escaped the group (the failure this test is about) must not outlive it
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert launcher.returncode == 130, output[-3000:]
    assert not any(_alive(pid) for pid in ranks)
    info = json.loads((run / "run.json").read_text())
    last = _trained_steps(run)[-1]
    assert info["status"] == "interrupted" and 0 < last < 500
    assert [step for step, _ in list_checkpoints(run)] == [last]  # saved by all ranks together, after one step
    rng = torch.load(run / "checkpoints" / f"step-{last}" / "rng.pt", weights_only=True)
    assert len(rng["per_rank"]) == 2
    assert "Traceback" not in output


def _trained_steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}") and '"loss"' in line]
