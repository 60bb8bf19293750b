"""Run folders are never lost or mixed: one process per folder, --overwrite only of runs and only after
validation, every early stop recorded in run.json, free disk checked first, a full disk one clear error."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.test_train import make_recipe, tiny_setup  # noqa: F401  (fixture)
from tunesmith.errors import UserError
from tunesmith.runs import disk, failures
from tunesmith.runs.folder import check_saved_tensors
from tunesmith.runs.lock import acquire_lock, lock_path, read_lock
from tunesmith.train import checkpoint, loop
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.loop import build_trainer, train

REPO = Path(__file__).resolve().parents[1]


def status(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def hold_lock_in_subprocess(run_dir: Path) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import time
        from tunesmith.runs.lock import acquire_lock
        acquire_lock({str(run_dir)!r})
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_start_is_refused_naming_the_holder_and_a_dead_holder_is_taken_over(tiny_setup, tmp_path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=1)
    holder = hold_lock_in_subprocess(recipe.run_dir)
    try:
        with pytest.raises(UserError, match=f"in use by pid {holder.pid} on .*wait for it"):
            train(recipe)
        assert not recipe.run_dir.exists()  # refused before anything was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = acquire_lock(recipe.run_dir)  # the kernel dropped the dead holder's lock: stale, taken over
    assert lock.previous is not None and lock.previous.pid == holder.pid
    assert read_lock(recipe.run_dir).pid == os.getpid()
    lock.release()
    assert not lock_path(recipe.run_dir).exists()
    train(recipe)
    assert status(recipe.run_dir)["status"] == "done"
    assert not lock_path(recipe.run_dir).exists()  # released at the end


def test_a_run_left_running_by_a_dead_process_is_marked_killed_and_restarts(tiny_setup, tmp_path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=2)
    trainer = build_trainer(recipe)  # run.json says "running"; no checkpoint yet
    assert status(recipe.run_dir)["status"] == "running"
    trainer.folder.lock.release()  # what the kernel does when the process is killed with -9
    with pytest.raises(UserError, match="status 'killed'.*--resume to start it over from step 0"):
        train(recipe)
    record = status(recipe.run_dir)
    assert record["status"] == "killed" and "ended without recording why" in record["reason"]
    train(recipe, resume=True)
    assert status(recipe.run_dir)["status"] == "done"


def test_overwrite_never_removes_a_folder_that_is_not_a_run(tiny_setup, tmp_path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=1)
    recipe.run_dir.mkdir(parents=True)
    keep = recipe.run_dir / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(UserError, match="not a tunesmith run folder.*not even with --overwrite"):
        train(recipe, overwrite=True)
    assert keep.read_text() == "mine"


def test_overwrite_removes_the_old_run_only_after_the_new_one_validated(tiny_setup, tmp_path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=1)
    train(recipe)
    bad = recipe.model_copy(update={"model": str(tmp_path / "no-such-model")})
    with pytest.raises(Exception):  # noqa: B017  (whatever loading a missing model raises)
        train(bad, overwrite=True)
    assert status(recipe.run_dir)["status"] == "done" and (recipe.run_dir / "adapter").is_dir()
    train(recipe, overwrite=True)
    assert status(recipe.run_dir)["status"] == "done"


def test_an_output_path_that_is_a_file_is_a_clear_error(tiny_setup, tmp_path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path / "out", max_steps=1)
    (tmp_path / "out").write_text("a file")
    with pytest.raises(UserError, match="is a file"):
        train(recipe)


def test_an_exception_in_the_loop_is_recorded_as_failed_with_its_reason(tiny_setup, tmp_path, monkeypatch) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=3)

    def broken(trainer, step):
        if step == 1:
            raise RuntimeError("boom at the second step")
        return real(trainer, step)

    real = loop._train_step
    monkeypatch.setattr(loop, "_train_step", broken)
    with pytest.raises(RuntimeError):
        train(recipe)
    record = status(recipe.run_dir)
    assert record["status"] == "failed" and record["reason"] == "RuntimeError: boom at the second step"
    assert not lock_path(recipe.run_dir).exists()


def test_disk_full_during_a_checkpoint_is_one_clear_error_and_keeps_the_earlier_one(tiny_setup, tmp_path,
                                                                                     monkeypatch) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=6, save_every=2)
    real_save = checkpoint.save_file
    calls = {"n": 0}

    def fills_the_disk(tensors, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            real_save(tensors, path)  # half written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", fills_the_disk)
    with pytest.raises(UserError, match="disk full while writing .*step-2 is intact.*--resume") as caught:
        train(recipe)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained tracebacks
    assert latest_checkpoint(recipe.run_dir).name == "step-2"
    assert not any(p.name.startswith(".tmp-") for p in (recipe.run_dir / "checkpoints").iterdir())
    record = status(recipe.run_dir)
    assert record["status"] == "failed" and record["reason"].startswith("disk full")
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    train(recipe, resume=True)
    assert status(recipe.run_dir)["status"] == "done"


def test_free_disk_is_checked_before_training(tiny_setup, tmp_path, monkeypatch) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=2, save_every=1, keep_checkpoints=3)
    free = {"bytes": 10}
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: type("U", (), {"free": free["bytes"]})())
    with pytest.raises(UserError, match=r"not enough free disk.*4 checkpoint\(s\).*keep_checkpoints"):
        train(recipe)
    assert not recipe.run_dir.exists()
    free["bytes"] = 10**12
    train(recipe)


def test_checkpoint_estimate_counts_weights_and_two_adam_states() -> None:
    model = torch.nn.Linear(10, 10)  # 110 fp32 parameters
    model.bias.requires_grad_(False)
    assert disk.checkpoint_bytes(model) == 100 * 4 + 100 * 8
    assert disk.final_bytes(model, full=True) == 110 * 4 and disk.final_bytes(model, full=False) == 100 * 4


def test_sigterm_records_killed(tmp_path) -> None:
    seen = []
    with pytest.raises(SystemExit) as stop, failures.recording_failures(lambda *a: seen.append(a), tmp_path):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert stop.value.code == 143 and seen == [("killed", "SIGTERM: the process was asked to stop")]


def test_saved_weights_with_an_empty_tensor_are_an_error(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"lora_A": torch.ones(2, 2)}, tmp_path / "adapter_model.safetensors")
    check_saved_tensors(tmp_path)
    save_file({"lora_A": torch.ones(2, 2), "lora_B": torch.zeros(0, 2)}, tmp_path / "adapter_model.safetensors")
    with pytest.raises(UserError, match="empty.*lora_B"):
        check_saved_tensors(tmp_path)


@pytest.mark.parametrize("message", ["basic_ios::clear: iostream error", "[enforce fail at inline_container.cc:672] . "
                                     "unexpected pos 69248 vs 69140",
                                     "Error while serializing: IoError(Os { code: 28, kind: StorageFull })"])
def test_libraries_reporting_a_full_disk_in_their_own_words_become_enospc(tmp_path, message) -> None:
    from tunesmith.runs.atomic import build_folder

    def fill(folder):
        (folder / "part").write_text("x")
        raise RuntimeError(message)  # what torch.save / safetensors raise when the disk fills (measured)

    with pytest.raises(OSError) as caught:
        build_folder(tmp_path / "out", fill)
    assert caught.value.errno == errno.ENOSPC
    assert not any(tmp_path.iterdir())  # the partial folder is gone
    with pytest.raises(RuntimeError, match="another bug"):
        build_folder(tmp_path / "out", lambda folder: (_ for _ in ()).throw(RuntimeError("another bug")))
