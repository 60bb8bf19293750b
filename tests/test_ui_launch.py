"""Launch, stop and resume through the dashboard's API: a detached `python -m tunesmith train` that keeps a
checkpoint on stop (SIGINT), finishes on resume, and is found again by a freshly started app."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from ui_fixtures import local_client, tiny_model_and_data, tiny_recipe

from tunesmith.runs.metrics import read_metrics
from tunesmith.ui.app import create_app

REPO = Path(__file__).resolve().parents[1]


def _until(check, timeout: float = 240.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {check.__doc__ or check}")


@pytest.mark.slow  # two training processes start (~15 s of imports each on 2 busy cores) and 400 steps run
def test_launch_stop_keeps_a_checkpoint_and_resume_finishes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model, data = tiny_model_and_data(tmp_path)
    runs = tmp_path / "runs"
    client = local_client(create_app(runs, workdir=REPO))
    recipe = tiny_recipe("stoppable", model, data, Path("elsewhere"), max_steps=400, eval_every=200)
    started = client.post("/api/launch", json={"recipe": recipe}).json()
    assert started["command"][1:4] == ["-m", "tunesmith", "train"] and started["name"] == "stoppable"

    metrics = runs / "stoppable" / "metrics.jsonl"

    def trained_some() -> bool:
        """a few logged train steps"""
        return metrics.is_file() and sum("loss" in r for r in read_metrics(metrics)) >= 3
    _until(trained_some)
    assert client.post("/api/runs/stoppable/stop", json={}).json()["signal"] == "SIGINT"
    _until(lambda: client.get("/api/launches/stoppable").json()["process"] != "running")
    run = json.loads((runs / "stoppable" / "run.json").read_text())
    assert run["status"] == "interrupted" and 3 <= run["state"]["step"] < 400
    step = run["state"]["step"]
    assert (runs / "stoppable" / "checkpoints" / f"step-{step}").is_dir()

    restarted = local_client(create_app(runs, workdir=REPO))  # a new UI process finds the launch on disk
    assert restarted.get("/api/launches/stoppable").json()["run"]["status"] == "interrupted"
    assert restarted.post("/api/runs/stoppable/resume", json={}).json()["command"][-1] == "--resume"
    _until(lambda: json.loads((runs / "stoppable" / "run.json").read_text())["status"] == "done", timeout=600)
    log = restarted.get("/api/launches/stoppable").json()["log"]
    assert f"resumed from {runs.resolve() / 'stoppable' / 'checkpoints' / f'step-{step}'}" in log.replace("\n", "")
    steps = [r["step"] for r in read_metrics(metrics) if "loss" in r]
    assert steps == list(range(1, 401))  # no step lost or repeated across stop and resume


def _ranks(launcher_pid: int) -> list[int]:
    """The training ranks under a detached launch: `python -m tunesmith train` processes below its torchrun."""
    parents, commands = {}, {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                commands[int(proc.name)] = (proc / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue

    def below(pid: int) -> bool:
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == launcher_pid:
                return True
        return False
    return [pid for pid, command in commands.items() if below(pid) and b"tunesmith" in command
            and b"torch.distributed.run" not in command and b"--nproc" not in command]


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow  # torchrun and two ranks start twice (~20 s of imports each on 2 busy cores)
def test_a_two_process_launch_runs_ranks_stops_as_a_group_and_resumes_with_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    model, data = tiny_model_and_data(tmp_path)
    runs = tmp_path / "runs"
    client = local_client(create_app(runs, workdir=REPO))
    recipe = tiny_recipe("pair", model, data, Path("elsewhere"), max_steps=300, eval_every=150, grad_accum=2,
                         save_every=2)
    started = client.post("/api/launch", json={"recipe": recipe, "nproc": 2}).json()
    assert started["nproc"] == 2 and started["command"][-2:] == ["--nproc", "2"]
    metrics = runs / "pair" / "metrics.jsonl"

    def ranks_training() -> list[int]:
        """two ranks running and a few steps logged"""
        ranks = _ranks(started["pid"])
        return ranks if len(ranks) == 2 and metrics.is_file() and sum("loss" in r for r in read_metrics(metrics)) >= 3 else []
    ranks = _until(ranks_training)
    assert client.post("/api/runs/pair/stop", json={}).json()["signal"] == "SIGINT"
    _until(lambda: client.get("/api/launches/pair").json()["process"] != "running")
    _until(lambda: all(_dead(pid) for pid in ranks), timeout=60)
    run = json.loads((runs / "pair" / "run.json").read_text())  # rank 0 saw the Ctrl-C (torchrun passes it on)
    assert run["status"] == "interrupted" and "Ctrl-C" in run["reason"]
    resumed = client.post("/api/runs/pair/resume", json={}).json()
    assert resumed["command"][-3:] == ["--resume", "--nproc", "2"]
    _until(lambda: json.loads((runs / "pair" / "run.json").read_text())["status"] == "done", timeout=600)
    assert [r["step"] for r in read_metrics(metrics) if "loss" in r][-1] == 300
