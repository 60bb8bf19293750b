"""`plan` and `advise` take a GGUF model as `train` does, reading its shape and tokenizer from the file's
metadata: nothing is de-quantized (the loaders that would are patched to fail), and a conversion already in the
cache is read instead of the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.gguf import source as gguf_source
from tunesmith.gguf.export import write_gguf
from tunesmith.plan.shape import load_shape, shape_from_config
from tunesmith.testing.tiny import save_tiny


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A tiny Llama written as an f16 GGUF file alone in its folder, and the config it came from."""
    root = tmp_path_factory.mktemp("gguf-model")
    folder = save_tiny("llama", root / "hf", vocab_size=300, num_hidden_layers=3, intermediate_size=96)
    model = AutoModelForCausalLM.from_pretrained(folder)
    out = root / "gguf" / "tiny.gguf"
    out.parent.mkdir()
    write_gguf(model, AutoTokenizer.from_pretrained(folder), out, "f16", "tiny")
    return out, model.config


@pytest.fixture
def no_dequantizing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every way to GGUF weights fails: tunesmith's conversion, transformers' tensor reading, gguf's dequantize.
    Returns the metadata reads (file paths) transformers made."""
    import gguf
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the GGUF's weights were read (de-quantized) for a config or tokenizer")

    real = gguf_utils.load_gguf_checkpoint
    reads: list[str] = []

    def metadata_only(path: str, return_tensors: bool = False, **kwargs: Any) -> dict[str, Any]:
        if return_tensors:
            refuse()
        reads.append(str(path))
        return real(path, return_tensors=False, **kwargs)

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gguf_source, "_convert", refuse)
    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", metadata_only)
    monkeypatch.setattr(gguf, "dequantize", refuse)
    return reads


def test_gguf_shape_is_read_from_its_metadata(tiny_gguf: tuple[Path, Any], no_dequantizing: list[str]) -> None:
    file, config = tiny_gguf
    expected = shape_from_config(config)
    assert load_shape(str(file)) == expected
    assert load_shape(str(file.parent)) == expected  # a folder holding one GGUF, as `model:` takes it
    assert expected.layers == 3 and expected.intermediate == 96


def test_a_cached_conversion_is_read_instead_of_the_file(tiny_gguf: tuple[Path, Any], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    file, _ = tiny_gguf
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(gguf_source, "_convert", lambda gguf_file, out: (
        save_tiny("llama", out, vocab_size=300, num_hidden_layers=5), (out / gguf_source._DONE).write_text("done")))
    gguf_source.converted_folder(file)  # what `train` leaves in the cache (here with 5 layers, to tell them apart)
    assert load_shape(str(file)).layers == 5


def _recipe(tmp_path: Path, model: Path, adapter: str = "lora", extra: str = "") -> Path:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"{i} " * 5}) + "\n" for i in range(40)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: g\nmodel: {model}\nadapter: {adapter}\ndata: {{train: {data}, template: plain}}\n"
                      f"train: {{batch_size: 4, max_seq_len: 64{extra}}}\n")
    return recipe


def test_plan_cli_takes_a_gguf_model(tiny_gguf: tuple[Path, Any], no_dequantizing: list[str], tmp_path: Path) -> None:
    file, _ = tiny_gguf
    result = CliRunner().invoke(app, ["plan", str(_recipe(tmp_path, file, extra=", max_steps: 3"))])
    assert result.exit_code == 0, result.output
    assert no_dequantizing == [str(file)], "config and tokenizer share one parse of the header"
    assert "time per step" in result.output and "unknown" not in result.output  # its tokenizer counted the data
    assert "3 steps, train.max_steps" in result.output


def test_advise_writes_a_recipe_for_a_gguf_and_says_where(tiny_gguf: tuple[Path, Any], no_dequantizing: list[str],
                                                          tmp_path: Path) -> None:
    file, _ = tiny_gguf
    out = tmp_path / "advised.yaml"
    answers = ["--freshness", "static", "--citations", "no", "--pairs", "hundreds", "--format", "high",
               "--vocabulary", "some", "--latency", "tight"]
    result = CliRunner().invoke(app, ["advise", *answers, "--model", str(file), "--data", "d.jsonl",
                                      "--max-seq-len", "64", "--out", str(out)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert f"recipe written to {out}" in result.output
    assert f"model: {file}" in out.read_text()
