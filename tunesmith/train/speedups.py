"""The speed and memory switches `build_trainer` applies once the adapter is on, and what it records of them.

* LoRA layers fused into one autograd node each (`lora_fused.py`), unless `model_options.kernels: none`;
* per-sample attention for packed rows on CPU (`packed_attention.py`), when `model_options.attn_implementation`
  is `auto` and the model would run sdpa there.

Neither changes what is learned: the fused layers are PEFT's math (tests/test_lora_fused.py), per-sample
attention is the masked sdpa's (tests/test_packed_attention.py).
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.lora_fused import fuse_for_run
from tunesmith.packed_attention import use_per_sample_attention
from tunesmith.recipe import Recipe


def apply_speedups(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> dict[str, Any]:
    """Apply the switches to `model` in place; the run.json `state` entries saying what runs."""
    speed: dict[str, Any] = {"fused_lora_layers": fuse_for_run(model, recipe.model_options.kernels,
                                                               recipe.distributed.strategy)}
    if recipe.model_options.attn_implementation == "auto" and use_per_sample_attention(model, device):
        speed["attn_implementation"] = model.config._attn_implementation
    return speed
