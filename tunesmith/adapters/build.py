"""Adapter kinds -> models to train; a trained adapter put back on a fresh base.

Every `adapter:` value of a recipe lands here, and each kind's record (adapters/kinds/) says how it is built:
PEFT kinds through their PEFT config, so the saved adapter is the standard PEFT folder that
`PeftModel.from_pretrained` (and, for LoRA, vLLM) loads; `full` and `bottleneck` through their own `wrap`
(bottleneck: adapters/bottleneck.py, PEFT has none). The kinds and what each trains are listed in
adapters/kinds/__init__.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

from tunesmith.adapters.folder import read_kind
from tunesmith.adapters.kinds import adapter_kind, picture_kinds
from tunesmith.errors import UserError
from tunesmith.recipe.spec import AdapterArgs, VisionSpec
from tunesmith.vision.adapt import freeze_for_full, restrict_peft_config
from tunesmith.vision.families import is_vision_config, vision_family


def apply_adapter(model: torch.nn.Module, adapter: str, args: AdapterArgs,
                  vision: VisionSpec | None = None) -> torch.nn.Module:
    """Wrap `model` for training with `adapter`; the base weights stay frozen for every kind but `full`.
    A vision-language model trains its language model only, plus what `vision` asks (vision/adapt.py)."""
    kind = adapter_kind(adapter)
    config = getattr(model, "config", None)
    family = vision_family(config) if config is not None and is_vision_config(config) else None
    if family is not None and not kind.reads_pictures:
        raise UserError(f"adapter: {adapter} is not supported for vision-language models; use {picture_kinds()}")
    if kind.wrap is not None:
        wrapped = kind.wrap(model, args)
        if family is not None:
            freeze_for_full(wrapped, family, vision or VisionSpec())
        return wrapped
    if kind.base_quantization is not None:
        if not getattr(model, "is_loaded_in_4bit", False):
            raise ValueError(f"adapter: {kind.name} needs the base loaded with load_model(..., "
                             f"quantization='{kind.base_quantization}')")
        # Norms and embeddings to fp32 for stable training; activation checkpointing stays the recipe's choice.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = peft_config(model, adapter, args)
    if family is not None:
        config = restrict_peft_config(config, model, family, vision or VisionSpec())
    peft_model = get_peft_model(model, config)
    if kind.after_wrap is not None:
        kind.after_wrap(peft_model)
    return peft_model


def peft_config(model: torch.nn.Module, adapter: str, args: AdapterArgs) -> PeftConfig:
    """The PEFT config for `adapter` with the recipe's knobs."""
    kind = adapter_kind(adapter)
    if kind.peft_config is None:
        raise ValueError(f"adapter '{adapter}' has no PEFT config")
    return kind.peft_config(model, args)


def load_adapter(model: torch.nn.Module, adapter_dir: str | Path) -> torch.nn.Module:
    """Put a run's trained adapter (its `adapter/` folder) on a freshly loaded base `model`, for inference.

    The one way back from disk for every kind: its own `load` where it has a format of its own, else
    `PeftModel.from_pretrained`; prompt-tuned models get the same logit alignment as in training, so their
    logits line up with the input tokens.
    """
    folder = Path(adapter_dir)
    kind = read_kind(folder)
    if kind.load is not None:
        return kind.load(model, folder)
    peft_model = PeftModel.from_pretrained(model, str(folder))
    if kind.after_load is not None:
        kind.after_load(peft_model)
    return peft_model.eval()
