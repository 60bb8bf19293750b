"""Adapter specs -> PEFT configs; apply them to a base model and count what trains.

`full` trains every weight; the LoRA family goes through PEFT so the saved adapter is the standard PEFT
folder that `PeftModel.from_pretrained` (and vLLM) load.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from tunesmith.errors import UserError
from tunesmith.recipe import AdapterArgs

SUPPORTED = ("lora", "dora", "full")


def apply_adapter(model: torch.nn.Module, adapter: str, args: AdapterArgs) -> torch.nn.Module:
    """Wrap `model` for training with `adapter`; the base weights stay frozen for every PEFT method."""
    if adapter == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if adapter in ("lora", "dora"):
        config = LoraConfig(
            r=args.r,
            lora_alpha=args.alpha,
            lora_dropout=args.dropout,
            target_modules=args.target_modules,
            use_dora=adapter == "dora",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, config)
    raise UserError(f"adapter: '{adapter}' is not available in this version; use one of: {', '.join(SUPPORTED)}")


def trainable_summary(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
