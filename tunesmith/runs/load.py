"""A resolved `Target` turned into a model ready to run: weights, tokenizer with its chat template, the
adapter on top, the end-of-turn text. Shared by eval, merge checks, PPO's reward model and serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.data.templates import apply_template, end_of_turn
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.runs.targets import Target
from tunesmith.vision.processor import processor_if_vision


@dataclass
class LoadedTarget:
    """A model ready to use: weights in eval mode, tokenizer with the chat template, end-of-turn text."""

    target: Target
    model: Any
    tokenizer: Any
    end_of_turn: str
    processor: Any = None
    """A vision-language model's processor (saved beside its weights or adapter); None for a text model."""


def load_target(target: Target, dtype: str = "auto", merge: bool = True) -> LoadedTarget:
    """Load weights and tokenizer, then the adapter on top (see `attach_adapter`); on a CUDA machine the model
    moves to the GPU (bitsandbytes has already placed a quantized one there)."""
    tokenizer = load_tokenizer(target.tokenizer_source)
    apply_template(tokenizer, target.template)
    model = load_model(target.model, dtype=dtype, tokenizer=tokenizer, quantization=target.quantization)
    if target.adapter is not None:
        model = attach_adapter(model, target.adapter, merge=merge and target.quantization is None)
    if target.quantization is None and torch.cuda.is_available():
        model.to("cuda")
    model.eval()
    processor = processor_if_vision(model, target.tokenizer_source)
    return LoadedTarget(target, model, tokenizer, end_of_turn(tokenizer, target.template), processor)


def attach_adapter(model: Any, folder: Path, merge: bool) -> Any:
    """The base with the adapter saved in `folder` (adapters.load_adapter: every method, 4-bit bases
    included); LoRA/DoRA is merged into full weights when `merge` (same outputs, at plain-model speed),
    but never into a quantized base."""
    from peft import PeftModel, PeftType

    from tunesmith.adapters.build import load_adapter

    model = load_adapter(model, folder)
    if merge and isinstance(model, PeftModel) and model.peft_config["default"].peft_type == PeftType.LORA:
        model = model.merge_and_unload()
    return model
