"""`train.gradient_checkpointing: auto` turns recomputation on only when the activations would not fit, using
the plan's memory model (one estimate in the code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig

from tests.test_train import make_recipe, tiny_setup  # noqa: F401  (fixture)
from tunesmith.plan import checkpointing as memory
from tunesmith.plan.checkpointing import decide_checkpointing, micro_batch_activations
from tunesmith.plan.memory import GIB, HALF_FACTOR, TrainSetup, activation_bytes
from tunesmith.plan.shape import shape_from_config

CONFIG = LlamaConfig(hidden_size=4096, num_hidden_layers=32, intermediate_size=11008)
CPU = torch.device("cpu")


def test_trainer_estimate_is_the_plan_estimate() -> None:
    need = micro_batch_activations(CONFIG, tokens=8192, half_precision=True)
    plan = activation_bytes(TrainSetup(shape=shape_from_config(CONFIG), micro_batch=4, seq_len=2048))
    assert need == plan
    assert micro_batch_activations(CONFIG, tokens=8192, half_precision=False) == pytest.approx(need / HALF_FACTOR, rel=1e-6)
    assert 90 * GIB < need < 130 * GIB  # an 8B-class shape at 8k tokens per micro-batch


def test_auto_follows_free_memory_and_explicit_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    need = micro_batch_activations(CONFIG, 8192, True)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024 * GIB)
    assert decide_checkpointing("auto", CONFIG, 8192, True, CPU)[0] is False
    monkeypatch.setattr(memory, "available_bytes", lambda device: 64 * GIB)
    on, note = decide_checkpointing("auto", CONFIG, 8192, True, CPU)
    assert on and note == f"gradient checkpointing on (auto): activations of a micro-batch ~{need / GIB:.2f} GiB, 64.0 GiB free"
    assert decide_checkpointing(False, CONFIG, 8192, True, CPU) == (False, None)
    assert decide_checkpointing(True, CONFIG, 1, True, CPU) == (True, None)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)
    assert decide_checkpointing("auto", CONFIG, 8192, True, CPU)[0] is False


def test_free_memory_is_read_on_this_machine() -> None:
    free = memory.available_bytes(CPU)
    assert free is None or free > 0


def test_trainer_applies_the_decision(tiny_setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from tunesmith.train.loop import _train_step, build_trainer

    roomy = build_trainer(make_recipe(tiny_setup, tmp_path / "roomy"))  # a tiny model: nowhere near half
    assert roomy.state.recorded["gradient_checkpointing"] is False
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    tight = build_trainer(make_recipe(tiny_setup, tmp_path / "tight"))
    assert tight.state.recorded["gradient_checkpointing"] is True
    base = tight.accelerator.unwrap_model(tight.model).get_base_model()
    assert base.is_gradient_checkpointing
    first = [_train_step(trainer, 0) for trainer in (roomy, tight)]  # recomputation changes time, not the step
    assert first[0]["loss"] == pytest.approx(first[1]["loss"], rel=1e-6)
    assert first[0]["grad_norm"] == pytest.approx(first[1]["grad_norm"], rel=1e-5)
    prefix = build_trainer(make_recipe(tiny_setup, tmp_path / "prefix", adapter="prefix"))
    assert prefix.state.recorded["gradient_checkpointing"] is False  # prefix tuning cannot be checkpointed


def test_fused_lora_terms_match_what_autograd_keeps() -> None:
    """The model's fused-LoRA activations (bool masks, the MLP's gate and up only) against autograd's saved
    tensors: PEFT's layers minus the fused ones, counted on a tiny Llama (tests/test_lora_fused.py)."""
    from dataclasses import replace

    from tests.test_lora_fused import lora_pair, saved_bytes
    from tunesmith.train.speedups import fuse_for_run

    plain, fused = lora_pair(dropout=0.05)
    fuse_for_run(fused, "auto", "ddp")  # the MLPs too, as training does
    ids = torch.randint(0, 128, (4, 64), generator=torch.Generator().manual_seed(4))
    measured = saved_bytes(plain, ids) - saved_bytes(fused, ids)
    shape = shape_from_config(plain.base_model.model.config)
    peft = TrainSetup(shape=shape, adapter="lora", half_precision=False, micro_batch=4, seq_len=64)
    predicted = activation_bytes(peft) - activation_bytes(replace(peft, fused_lora=True))
    assert 0.75 * measured < predicted < 1.25 * measured, (predicted, measured)
