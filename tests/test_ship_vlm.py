"""Shipping a vision-language run (tiny random LLaVA): `export` writes the adapter (with the trained projector
and the processor) that PEFT reloads onto the VLM base, answering as the run does on an image prompt; and
`validate` shows the image tokens each row costs, from the model's processor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tunesmith.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def made(tiny_llava: dict[str, Path]) -> dict[str, Path]:
    return tiny_llava


def test_exported_adapter_reloads_onto_the_vlm_base_with_peft(made: dict[str, Path], tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tunesmith.adapters.build import load_adapter
    from tunesmith.models.load import load_model
    from tunesmith.vision.processor import parity_inputs

    out = tmp_path / "exported"
    result = runner.invoke(app, ["export", str(made["run"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    base = AutoModelForImageTextToText.from_pretrained(made["base"])
    reloaded = PeftModel.from_pretrained(base, out).eval()
    processor = AutoProcessor.from_pretrained(out)
    inputs = parity_inputs(processor)
    run_model = load_adapter(load_model(str(made["base"]), dtype="fp32"), made["run"] / "adapter").eval()
    plain = AutoModelForImageTextToText.from_pretrained(made["base"]).eval()
    with torch.no_grad():
        got, want, untuned = (m(**inputs).logits for m in (reloaded, run_model, plain))
    assert torch.allclose(got, want, atol=1e-5)
    assert (got - untuned).abs().max() > 1e-3  # the adapter and its projector are really applied
    assert "AutoModelForImageTextToText" in (out / "README.md").read_text()


def test_validate_counts_image_tokens_per_row_with_the_processor(made: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    from tunesmith.vision.processor import load_processor

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: v\nmodel: {made['base']}\nadapter: lora\n"
                      f"data: {{train: {made['data']}, eval: 0.5}}\ntrain: {{max_seq_len: 128}}\n")
    result = runner.invoke(app, ["validate", str(recipe)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    processor = load_processor(str(made["base"]))
    ids = processor(text=["<image>"], images=[[Image.new("RGB", (64, 64))]])["input_ids"][0]
    tokens = sum(int(i) == processor.image_token_id for i in ids)  # what one 64x64 picture expands into
    line = next(line for line in result.output.splitlines() if "image tokens per row" in line)
    assert f"{tokens} / {tokens} / {tokens}" in line and tokens > 1
