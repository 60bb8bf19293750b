"""The run-folder API: atomic writes, the typed run.json record, target resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.errors import UserError
from tunesmith.runs import read_run, resolve_target
from tunesmith.runs.atomic import build_folder, discard, remove_leftovers, write_text_atomic
from tunesmith.runs.record import RunRecord


def test_build_folder_swaps_in_whole_or_keeps_the_old(tmp_path: Path) -> None:
    target = tmp_path / "out"
    build_folder(target, lambda tmp: (tmp / "a.txt").write_text("one"))
    assert (target / "a.txt").read_text() == "one"

    def half_then_fail(tmp: Path) -> None:
        (tmp / "a.txt").write_text("two")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        build_folder(target, half_then_fail)
    assert (target / "a.txt").read_text() == "one"  # the old version is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # and no partial folder is left

    build_folder(target, lambda tmp: (tmp / "b.txt").write_text("three"), durable=True)
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_text_write_and_leftover_cleanup(tmp_path: Path) -> None:
    file = tmp_path / "run.json"
    write_text_atomic(file, "{}")
    with pytest.raises(RuntimeError):
        from tunesmith.runs.atomic import atomic_file

        with atomic_file(file) as handle:
            handle.write('{"half": ')
            raise RuntimeError("crash mid-write")
    assert file.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    (tmp_path / ".tmp-step-3-x").mkdir()
    (tmp_path / ".del-old").mkdir()
    (tmp_path / "keep").mkdir()
    remove_leftovers(tmp_path, stem="step-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "run.json"]
    discard(tmp_path / "keep")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def _record(path: Path, **extra: object) -> dict:
    record = {"name": "r", "status": "done", "recipe": {"data": {"template": "chatml"}, "adapter_args": {"r": 32}},
              "base_model": "/m", "method": "sft", "adapter": "dora", "output": "adapter"}
    record.update(extra)
    (path / "run.json").write_text(json.dumps(record))
    return record


def test_read_run_is_typed_and_explains_damage(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a run folder"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text('{"name": ')
    with pytest.raises(UserError, match="not valid JSON"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not an object"):
        read_run(tmp_path)
    (tmp_path / "run.json").write_text('{"name": "r", "status": "done"}')
    with pytest.raises(UserError, match="field 'recipe' is missing"):
        read_run(tmp_path)
    raw = _record(tmp_path)
    run = read_run(tmp_path)
    assert isinstance(run, RunRecord) and run.template == "chatml" and run.adapter_args["r"] == 32
    assert run.weights_dir == tmp_path / "adapter" and run.quantization is None
    assert {k: v for k, v in run.to_json().items() if k in raw} == raw
    with pytest.raises(UserError, match="has no adapter/ folder"):
        run.require_finished()
    _record(tmp_path, status="interrupted")
    with pytest.raises(UserError, match="status 'interrupted'.*--resume"):
        read_run(tmp_path).require_finished()


def test_adapter_folder_alone_names_its_kind_and_base(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "use_dora": True, "base_model_name_or_path": "/base"}))
    target = resolve_target(str(tmp_path))
    assert (target.model, target.adapter, target.adapter_kind, target.run) == ("/base", tmp_path, "dora", None)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_target(str(gguf)).model == str(gguf)
