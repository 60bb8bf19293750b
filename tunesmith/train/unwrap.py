"""The transformers model under the wrappers training puts around it (DDP, FSDP, PEFT)."""

from __future__ import annotations

import torch


def unwrap_to_transformers(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under DDP (`.module`) and PEFT (`.get_base_model()`) wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        else:
            return model
