"""`train.gradient_checkpointing: auto`: recompute activations only when keeping them would not fit.

Checkpointing trades about a third more compute for most of the activation memory. Measured with
`python -m bench.throughput` on a 2-core CPU (bf16 autocast, LoRA, 4 rows of 512 tokens): 0.58-0.60x
the peak memory of the same run without it, at 0.65-0.67x the speed. So it pays only when memory is what runs out, and `auto` turns it on
only when the activations a micro-batch would keep are estimated to exceed half of the memory free at
the start (GPU memory on CUDA, MemAvailable on CPU).

The estimate is per token and layer, `ACTIVATION_BYTES_PER_HIDDEN * hidden_size` bytes: measured at 95-110
times the hidden size on Llama shapes of width 384 and 640 (the memory gradient checkpointing saved, over
tokens x layers), rounded up; under fp32 (no autocast) it doubles.
"""

from __future__ import annotations

from pathlib import Path

import torch

ACTIVATION_BYTES_PER_HIDDEN = 128
FIT_SHARE = 0.5
GIB = 1 << 30


def activation_bytes(config: object, tokens: int, half_precision: bool) -> int:
    """Estimated bytes of activations kept for the backward of one micro-batch of `tokens` tokens."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(text, "hidden_size", None) or getattr(text, "n_embd", 0)
    layers = getattr(text, "num_hidden_layers", None) or getattr(text, "n_layer", 0)
    per_value = 1 if half_precision else 2
    return ACTIVATION_BYTES_PER_HIDDEN * per_value * hidden * layers * tokens


def available_bytes(device: torch.device) -> int | None:
    """Free memory on `device` now: CUDA's free memory, or the kernel's MemAvailable; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def decide_checkpointing(setting: bool | str, config: object, tokens: int, half_precision: bool,
                         device: torch.device) -> tuple[bool, str | None]:
    """Whether to checkpoint, and for `auto` a line saying why (None when the setting was explicit)."""
    if setting != "auto":
        return bool(setting), None
    need, free = activation_bytes(config, tokens, half_precision), available_bytes(device)
    if free is None:
        return False, "gradient checkpointing off (auto): free memory unknown"
    on = need > FIT_SHARE * free
    return on, (f"gradient checkpointing {'on' if on else 'off'} (auto): activations of a micro-batch "
                f"~{need / GIB:.2f} GiB, {free / GIB:.1f} GiB free")
