"""`train.gradient_checkpointing: auto`: recompute activations only when keeping them would not fit.

Checkpointing trades about a third more compute for most of the activation memory. Measured with
`python -m bench.throughput` on a 2-core CPU (bf16 autocast, LoRA, 4 rows of 512 tokens): 0.58-0.60x
the peak memory of the same run without it, at 0.65-0.67x the speed. So it pays only when memory is what
runs out, and `auto` turns it on only when the activations a micro-batch would keep (the memory model's
`activation_bytes`, the same estimate `tunesmith plan` prints) exceed half of the memory free at the start
(GPU memory on CUDA, MemAvailable on CPU).
"""

from __future__ import annotations

import torch

from tunesmith.plan.hardware import available_host_bytes
from tunesmith.plan.memory import GIB, TrainSetup, activation_bytes
from tunesmith.plan.shape import shape_from_config

FIT_SHARE = 0.5


def micro_batch_activations(config: object, tokens: int, half_precision: bool) -> int:
    """Bytes of activations one micro-batch of `tokens` tokens keeps for backward, without checkpointing."""
    setup = TrainSetup(shape=shape_from_config(config), micro_batch=1, seq_len=tokens, half_precision=half_precision)
    return activation_bytes(setup)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` now: CUDA's free memory, or the kernel's MemAvailable; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return available_host_bytes()


def decide_checkpointing(setting: bool | str, config: object, tokens: int, half_precision: bool,
                         device: torch.device) -> tuple[bool, str | None]:
    """Whether to checkpoint, and for `auto` a line saying why (None when the setting was explicit)."""
    if setting != "auto":
        return bool(setting), None
    need, free = micro_batch_activations(config, tokens, half_precision), available_bytes(device)
    if free is None:
        return False, "gradient checkpointing off (auto): free memory unknown"
    on = need > FIT_SHARE * free
    return on, (f"gradient checkpointing {'on' if on else 'off'} (auto): activations of a micro-batch "
                f"~{need / GIB:.2f} GiB, {free / GIB:.1f} GiB free")
