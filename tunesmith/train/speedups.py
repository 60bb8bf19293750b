"""The speed and memory switches `build_trainer` applies once the adapter is on, and what it records of them.

* LoRA layers fused into one autograd node each (`speedups/lora_fused.py`), and SwiGLU MLPs of LoRA layers into one
  node per MLP (`speedups/mlp_fused.py`), unless `model_options.kernels: none` asks for plain PEFT, or DeepSpeed shards
  the parameters (ZeRO gathers a module's weights in hooks around that module's own forward, which a fused
  layer does not call);
* per-sample attention for packed rows on CPU (`speedups/packed_attention.py`), when `model_options.attn_implementation`
  is `auto` and the model would run sdpa there;
* on CPU, freed host memory kept for the next step rather than faulted in again (`speedups/host_memory.py`), unless
  `model_options.kernels: none`.

None changes what is learned: the fused layers are PEFT's math (tests/test_lora_fused.py), per-sample
attention is the masked sdpa's (tests/test_packed_attention.py).
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.plan.setup import lora_fusion_allowed
from tunesmith.recipe.spec import Recipe
from tunesmith.speedups.host_memory import keep_freed_host_memory
from tunesmith.speedups.lora_fused import fuse_lora_layers
from tunesmith.speedups.mlp_fused import fuse_mlps
from tunesmith.speedups.packed_attention import use_per_sample_attention


def fuse_for_run(model: torch.nn.Module, kernels: str, strategy: str) -> dict[str, int]:
    """Fuse the run's LoRA MLPs and layers where the run allows; how many of each."""
    if not lora_fusion_allowed(kernels, strategy):
        return {"fused_lora_layers": 0, "fused_mlps": 0}
    mlps = fuse_mlps(model)  # first: a fused MLP runs its layers' LoRA math itself, not their forward
    return {"fused_lora_layers": fuse_lora_layers(model), "fused_mlps": mlps}


def apply_speedups(model: torch.nn.Module, recipe: Recipe, device: torch.device) -> dict[str, Any]:
    """Apply the switches to `model` in place; the run.json `state` entries saying what runs."""
    speed: dict[str, Any] = fuse_for_run(model, recipe.model_options.kernels, recipe.distributed.strategy)
    if recipe.model_options.attn_implementation == "auto" and use_per_sample_attention(model, device):
        speed["attn_implementation"] = model.config._attn_implementation
    if device.type == "cpu" and recipe.model_options.kernels != "none":
        speed["host_memory_kept"] = keep_freed_host_memory()
    return speed
