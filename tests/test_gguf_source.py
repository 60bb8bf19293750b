"""`model:` naming a GGUF file: which paths count as one, and the converted copy is made once and reused.
(The real conversion of a real GGUF file is checked on SmolLM2 in test_smollm2.py, marked slow.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tunesmith.errors import UserError
from tunesmith.gguf import source as gguf_source
from tunesmith.gguf.export import export_gguf
from tunesmith.gguf.header import describe_weights, gguf_weight_types
from tunesmith.gguf.source import converted_folder, find_gguf
from tunesmith.testing.tiny import save_tiny


def write_gguf_file(path: Path, text: str = "v1") -> Path:
    """A small real GGUF file (a vocabulary array, one Q8_0 matrix, one F32 vector); `text` varies its bytes."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(text)
    writer.add_token_list([f"tok{i}" for i in range(50)])
    weights = np.linspace(-1, 1, 64 * 32, dtype=np.float32).reshape(64, 32)
    writer.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


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
    file = write_gguf_file(tmp_path / "m.gguf")
    caplog.set_level(logging.WARNING)
    first = converted_folder(file, tmp_path / "cache")
    assert converted_folder(file, tmp_path / "cache") == first and len(calls) == 1
    assert (first / "config.json").is_file() and not list((tmp_path / "cache").glob(".converting-*"))
    assert caplog.text.count("de-quantized weights") == 1, "one warning per process and file"
    write_gguf_file(file, "v2")  # new content: a new copy
    assert converted_folder(file, tmp_path / "cache") != first and len(calls) == 2


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(gguf_file: Path, out: Path) -> None:
        (out / "half.safetensors").write_bytes(b"x")
        raise UserError("transformers cannot load GGUF file")

    monkeypatch.setattr(gguf_source, "_convert", broken)
    file = write_gguf_file(tmp_path / "m.gguf")
    with pytest.raises(UserError):
        converted_folder(file, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_the_header_tells_the_weight_type(tmp_path: Path) -> None:
    assert gguf_weight_types(write_gguf_file(tmp_path / "q.gguf")) == {"Q8_0": 1}  # the F32 vector is no matrix
    assert describe_weights(gguf_weight_types(tmp_path / "q.gguf")) == "Q8_0-quantized weights"
    assert describe_weights({"F16": 14, "F32": 1}) == "F16 weights, not quantized (1 matrix F32)"
    (tmp_path / "bad.gguf").write_bytes(b"GGML....")
    with pytest.raises(UserError, match="not a GGUF file"):
        gguf_weight_types(tmp_path / "bad.gguf")


@pytest.mark.parametrize(("outtype", "said", "not_said"), [
    ("f16", "holds F16 weights, not quantized: it is used through a float32 Hugging Face copy (", "quantized weights"),
    ("q8_0", "holds Q8_0-quantized weights: it is used through a float32 Hugging Face copy of the de-quantized", "F16"),
])
def test_a_real_conversion_says_what_the_file_holds_and_what_the_copy_costs(
        outtype: str, said: str, not_said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    folder = save_tiny("llama", tmp_path / "tiny", vocab_size=300)
    file = export_gguf(folder, tmp_path / f"tiny-{outtype}.gguf", outtype).path
    monkeypatch.setattr(gguf_source, "_WARNED", set())
    caplog.set_level(logging.WARNING)
    copy = converted_folder(file, tmp_path / "cache")
    assert said in caplog.text and not_said not in caplog.text.split("holds")[1].split(":")[0]
    size = gguf_source.folder_bytes(copy)
    assert size > 0 and f"wrote {copy}: the float32 copy of {file.name}, {size / 1e3:,.0f} kB of disk" in caplog.text
    assert "Delete that folder to free the space" in caplog.text
    monkeypatch.setattr(gguf_source, "_WARNED", set())
    caplog.clear()
    assert converted_folder(file, tmp_path / "cache") == copy  # a later process: told the size, nothing written
    assert f"made once, {size / 1e3:,.0f} kB: {copy}" in caplog.text and "wrote" not in caplog.text
