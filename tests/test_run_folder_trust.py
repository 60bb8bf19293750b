"""A handed-over run folder is untrusted input: every bad run.json field is one clear error naming it, its
paths stay inside the folder, its base model must be a model, and a run left `running` by a dead process
reads as `killed`."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_run_safety import hold_lock_in_subprocess
from tunesmith.cli import app
from tunesmith.errors import UserError
from tunesmith.runs import RunFileError, read_run, resolve_target
from tunesmith.runs.lock import lock_path


def write_run(folder: Path, **fields: object) -> Path:
    """A finished LoRA run folder (adapter/ holds only a config: nothing here gets as far as loading it)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"name": folder.name, "status": "done", "base_model": "org/model", "method": "sft", "adapter": "lora",
              "output": "adapter", "recipe": {"data": {"template": "chatml"}, "model_options": {}},
              "started": "2026-12-01T10:00:00+00:00", "ended": "2026-12-01T10:05:00+00:00", "state": {"step": 3}}
    record.update(fields)
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "adapter").mkdir(exist_ok=True)
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return folder


@pytest.mark.parametrize(("fields", "field"), [
    ({"output": "../../runs/other/adapter"}, "output"),
    ({"output": "/etc/ssl"}, "output"),
    ({"output": "adapter/../../other"}, "output"),
    ({"recipe": "x"}, "recipe"),
    ({"recipe": {"data": [1, 2]}}, "recipe"),
    ({"state": [1, 2]}, "state"),
    ({"state": {"step": "3"}}, "state"),
    ({"started": "yesterday"}, "started"),
    ({"status": "finished"}, "status"),
    ({"base_model": 5}, "base_model"),
    ({"base_model": "/m\u0000odel"}, "base_model"),
    ({"adapter": "rootkit"}, "adapter"),
    ({"versions": {"torch": 2}}, "versions.torch"),
    ({"final": "great"}, "final"),
])
def test_each_bad_field_is_a_typed_error_naming_it(tmp_path: Path, fields: dict, field: str) -> None:
    run = write_run(tmp_path / "run", **fields)
    with pytest.raises(RunFileError) as caught:
        read_run(run)
    assert caught.value.field == field and f"field '{field}'" in str(caught.value)
    assert str(run / "run.json") in str(caught.value)


def test_a_weights_folder_that_links_out_of_the_run_is_refused(tmp_path: Path) -> None:
    other = write_run(tmp_path / "other")
    run = write_run(tmp_path / "run")
    (run / "adapter" / "adapter_config.json").unlink()
    (run / "adapter").rmdir()
    (run / "adapter").symlink_to(other / "adapter")
    with pytest.raises(RunFileError, match="field 'output' points outside the run folder"):
        read_run(run)


@pytest.mark.parametrize("base", ["/etc", "/no/such/model", "../../x", "org/model/../../etc"])
def test_a_base_model_that_is_no_model_is_refused_before_loading(tmp_path: Path, base: str) -> None:
    run = write_run(tmp_path / "run", base_model=base)
    record = read_run(run)  # listing the run still works: the base only matters to a verb that loads it
    assert record.base_model == base
    with pytest.raises(RunFileError, match="field 'base_model'"):
        record.require_finished()
    with pytest.raises(RunFileError, match="field 'base_model'"):
        resolve_target(str(run))


@pytest.mark.parametrize("verb", [["merge"], ["export", "--out", "OUT"], ["eval", "--suite", "heldout"]])
def test_the_verbs_print_the_field_without_a_traceback(tmp_path: Path, verb: list[str]) -> None:
    run = write_run(tmp_path / "run", base_model="/etc")
    args = [verb[0], str(run), *[str(tmp_path / "out") if a == "OUT" else a for a in verb[1:]]]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "base_model" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_good_base_model_and_fields_of_newer_versions_pass(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    run = write_run(tmp_path / "run", base_model=str(base), plan_check={"predicted_s": 1.0, "measured_s": 1.2},
                    recipe={"model_options": {"trust_remote_code": True, "dtype": "fp32"}})
    record = read_run(run).require_finished()
    assert resolve_target(str(run)).model == str(base)
    assert record.to_json()["plan_check"] == {"predicted_s": 1.0, "measured_s": 1.2}
    assert record.model_options == {"dtype": "fp32"}  # a run folder never switches remote code on


def test_a_run_left_running_by_a_dead_holder_reads_as_killed(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", status="running", ended=None)
    holder = hold_lock_in_subprocess(run)
    try:
        assert read_run(run).status == "running"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(run).exists()  # kill -9 leaves the lock file behind, unlocked
    record = read_run(run)
    assert record.status == "killed" and "--resume" in record.reason
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # reading never writes


def test_a_lock_naming_a_reused_pid_or_no_lock_at_all_reads_as_killed(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", status="running", ended=None)
    assert read_run(run).status == "killed"  # no lock file: nobody holds the run
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2001-01-01T00:00:00+00:00", "command": "x"}
    lock_path(run).write_text(json.dumps(info))  # this process is alive, but started long after that lock
    assert read_run(run).status == "killed"
    lock_path(run).write_text(json.dumps({**info, "host": "another-host"}))
    assert read_run(run).status == "running"  # held from another machine: this one cannot tell


def test_a_target_with_a_nul_or_a_list_shaped_adapter_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="NUL"):
        resolve_target("runs/a\x00b")
    (tmp_path / "adapter_config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not an object"):
        resolve_target(str(tmp_path))
    (tmp_path / "adapter_config.json").write_text('{"base_model_name_or_path": ["a"]}')
    with pytest.raises(UserError, match="does not name its base model"):
        resolve_target(str(tmp_path))


def test_a_field_that_looks_like_console_markup_is_printed_as_it_is(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", output="[/x]")
    result = CliRunner().invoke(app, ["merge", str(run)])
    assert result.exit_code == 2 and "'[/x]'" in result.output and "Traceback" not in result.output
