"""`model:` naming a GGUF file: which paths count as one, and the converted copy is made once and reused.
(The real conversion of a real GGUF file is checked on SmolLM2 in test_smollm2.py, marked slow.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tunesmith import gguf_source
from tunesmith.errors import UserError
from tunesmith.gguf_source import converted_folder, find_gguf


def test_find_gguf_takes_a_file_or_a_folder_holding_one(tmp_path: Path) -> None:
    file = tmp_path / "m" / "model.Q4_1.gguf"
    file.parent.mkdir()
    file.write_bytes(b"GGUF")
    assert find_gguf(str(file)) == file and find_gguf(str(file.parent)) == file
    (file.parent / "config.json").write_text("{}")
    assert find_gguf(str(file.parent)) is None, "a Hugging Face folder stays one"
    assert find_gguf(str(tmp_path / "missing.gguf")) is None and find_gguf("org/name") is None
    other = tmp_path / "two"
    other.mkdir()
    (other / "a.gguf").write_bytes(b"GGUF")
    (other / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match="several GGUF files"):
        find_gguf(str(other))


def test_conversion_happens_once_per_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def fake_convert(gguf_file: Path, out: Path) -> None:
        calls.append(gguf_file)
        (out / "config.json").write_text("{}")
        (out / gguf_source._DONE).write_text("done\n")

    monkeypatch.setattr(gguf_source, "_convert", fake_convert)
    monkeypatch.setattr(gguf_source, "_WARNED", set())
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF v1")
    caplog.set_level(logging.WARNING)
    first = converted_folder(file, tmp_path / "cache")
    assert converted_folder(file, tmp_path / "cache") == first and len(calls) == 1
    assert (first / "config.json").is_file() and not list((tmp_path / "cache").glob(".converting-*"))
    assert caplog.text.count("de-quantized weights") == 1, "one warning per process and file"
    file.write_bytes(b"GGUF v2")  # new content: a new copy
    assert converted_folder(file, tmp_path / "cache") != first and len(calls) == 2


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(gguf_file: Path, out: Path) -> None:
        (out / "half.safetensors").write_bytes(b"x")
        raise UserError("transformers cannot load GGUF file")

    monkeypatch.setattr(gguf_source, "_convert", broken)
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF")
    with pytest.raises(UserError):
        converted_folder(file, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
