"""The memory model behind `tunesmith plan` and `train.gradient_checkpointing: auto`: counts against real
models and PEFT, the public 7B arithmetic, sharding, checkpointing, fixes, and the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from transformers import LlamaConfig
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.plan.fixes import fixes
from tunesmith.plan.hardware import gpu_device, parse_bytes
from tunesmith.plan.memory import GIB, TrainSetup, estimate_memory
from tunesmith.plan.setup import FUSED_FAMILIES
from tunesmith.plan.shape import parse_count, shape_from_config, shape_from_count
from tunesmith.testing.tiny import tiny_model

LLAMA2_7B = shape_from_config(LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                          num_key_value_heads=32, intermediate_size=11008, vocab_size=32000))


def test_llama2_7b_counts_match_the_published_figures() -> None:
    assert LLAMA2_7B.params == 6_738_415_616  # Llama-2-7b's parameter count
    assert LLAMA2_7B.lora_params(16) == 39_976_960  # PEFT's "trainable params" for r=16 on all linear layers


def test_7b_full_fine_tuning_is_16_bytes_per_parameter_before_activations() -> None:
    """The public arithmetic: mixed-precision AdamW holds ~16 bytes per parameter (weights, gradients, two moments)."""
    setup = TrainSetup(shape=LLAMA2_7B, adapter="full", weight_dtype="fp32", micro_batch=1, seq_len=1)
    parts = estimate_memory(setup).parts
    states = parts["weights"] + parts["gradients"] + parts["optimizer"]
    assert states / LLAMA2_7B.params == pytest.approx(16.0)
    assert states / GIB == pytest.approx(100.4, abs=0.1)  # the ~100 GiB (112 GB) figure quoted for 7B


def test_qlora_7b_weights_use_nf4_with_double_quantization() -> None:
    setup = TrainSetup(shape=LLAMA2_7B, adapter="qlora", micro_batch=1, seq_len=1)
    weights = estimate_memory(setup).parts["weights"]
    other = LLAMA2_7B.params - LLAMA2_7B.linear_params
    per_linear = (weights - 4 * other) / LLAMA2_7B.linear_params
    assert per_linear == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256))  # 4.127 bits, vs 4.5 without double quant
    assert 3.5 < weights / GIB < 4.5  # the ~3.9 GB QLoRA 7B base


def test_shape_counts_equal_real_models_and_peft() -> None:
    """Independent references: the parameters torch allocates, and the LoRA parameters PEFT adds."""
    from peft import LoraConfig, get_peft_model

    for family in ("llama", "qwen2", "gpt2", "gpt_neox", "mistral"):
        model = tiny_model(family, vocab_size=300)
        shape = shape_from_config(model.config)
        assert shape.params == sum(p.numel() for p in model.parameters()), family
        if family in ("gpt2", "gpt_neox"):
            continue  # fused q/k/v projections: one LoRA pair where our count assumes three
        peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
        trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
        assert shape.lora_params(4) == trainable, family


def test_sharding_splits_states_then_weights() -> None:
    base = TrainSetup(shape=LLAMA2_7B, adapter="full", weight_dtype="fp32", micro_batch=1, seq_len=512, nproc=8)
    ddp, zero2, zero3 = (estimate_memory(replace(base, sharding=s)).parts for s in ("ddp", "zero2", "zero3"))
    assert zero2["optimizer"] == ddp["optimizer"] // 8 and zero2["gradients"] == ddp["gradients"] // 8
    assert zero2["weights"] == ddp["weights"]
    assert zero3["weights"] < ddp["weights"] // 4  # an eighth, plus one gathered layer
    assert estimate_memory(replace(base, sharding="fsdp")).parts == zero3


def test_checkpointing_fused_head_and_8bit_optimizer_cut_their_parts() -> None:
    base = TrainSetup(shape=LLAMA2_7B, adapter="full", weight_dtype="fp32", micro_batch=4, seq_len=2048)
    full, ckpt = estimate_memory(base).parts, estimate_memory(replace(base, checkpointing=True)).parts
    assert ckpt["activations"] < full["activations"] / 5
    unfused = estimate_memory(replace(base, fused_head=False)).parts["logits"]
    assert full["logits"] < unfused / 50  # one 4M-logit chunk instead of 8192 x 32000
    assert estimate_memory(replace(base, optimizer="adamw8bit")).parts["optimizer"] < full["optimizer"] / 3
    doubled = estimate_memory(replace(base, micro_batch=8)).parts["activations"]
    assert doubled == 2 * full["activations"]


def test_fixes_for_7b_full_on_a_24gib_gpu_say_what_fits() -> None:
    setup = TrainSetup(shape=LLAMA2_7B, adapter="full", weight_dtype="fp32", micro_batch=4, seq_len=1024)
    found = fixes(setup, 24 * GIB)
    assert found and all("qlora" in f or "lora" in f for f in found)
    assert fixes(replace(setup, adapter="qlora", weight_dtype="bf16"), 80 * GIB) != []  # lighter still listed


def test_sizes_and_devices_parse() -> None:
    assert parse_count("7B") == 7_000_000_000 and parse_count("135m") == 135_000_000 and parse_count("x") is None
    assert parse_bytes("24GiB") == 24 * GIB and parse_bytes("512MiB") == 512 << 20
    assert gpu_device("h100").memory == 80 * GIB
    shape = shape_from_count(7_000_000_000)
    assert 0.85 < shape.params / 7e9 < 1.15


def test_fused_families_are_the_trainers_own() -> None:
    """One set, read by both: `plan` counts the fused head exactly where the trainer takes it."""
    from tunesmith.methods.language_modeling.objective import FUSED_FAMILIES as TRAINER

    assert FUSED_FAMILIES is TRAINER


def tiny_full_recipe(tmp_path: Path, train: str) -> Path:
    """A full fine-tuning recipe over a tiny random Llama and 20 Alpaca rows; `train` is the recipe's train block."""
    import json

    from tunesmith.testing.tiny import save_tiny

    model = save_tiny("llama", tmp_path / "m", vocab_size=300)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"{i}"}) + "\n" for i in range(20)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: p\nmodel: {model}\nadapter: full\ndata: {{train: {data}, template: plain}}\n"
                      f"train: {train}\n")
    return recipe


def test_plan_cli_prints_the_breakdown_and_fixes(tmp_path: Path) -> None:
    recipe = tiny_full_recipe(tmp_path, "{batch_size: 64, max_seq_len: 4096}")
    result = CliRunner().invoke(app, ["plan", str(recipe), "--memory", "1GiB"])
    assert result.exit_code == 0, result.output
    assert "optimizer states" in result.output and "does not fit" in result.output
    assert "to fit, change one of" in result.output
    fine = CliRunner().invoke(app, ["plan", str(recipe), "--gpu", "h100-80g", "--tokens", "1000000"])
    assert "fits" in fine.output and "time per epoch" in fine.output and "unknown" not in fine.output
