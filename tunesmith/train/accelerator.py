"""The run's `Accelerator`: a new one for every run, in the mixed precision the hardware supports.

A new one for every run, so one Python process can train many times with different settings.

accelerate keeps its state in process-wide singletons: once an `Accelerator(mixed_precision="no")` exists,
`Accelerator(mixed_precision="bf16")` fails with "AcceleratorState has already been initialized and cannot
be changed". A notebook, `compare`, the web UI or a test session trains several recipes in one process, so
each run clears the previous run's `AcceleratorState` and `GradientState` first, as transformers'
`TrainingArguments` does before building its own. The `PartialState` (which process this is, the
distributed process group) is kept: it does not depend on the recipe, and tearing it down under a
multi-process launch would break the process group. Only one run trains at a time in a process; an
`Accelerator` from an earlier run must not be used after a new run starts.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

from tunesmith.models.load import cpu_has_native_bf16


def fresh_accelerator(mixed_precision: str, **kwargs: Any) -> Accelerator:
    """An `Accelerator` with `mixed_precision` ("no", "bf16", "fp16"), whatever an earlier run in this
    process used; `kwargs` go to `Accelerator` (trackers: train/trackers.py)."""
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, **kwargs)


def resolve_mixed_precision(mode: str) -> str:
    """`auto` -> bf16 on CUDA with bf16 or on a CPU with native bf16 (about 1.7x faster there), else `no`.

    Master weights stay fp32 in every mode: autocast only lowers the precision of the matmuls.
    """
    if mode != "auto":
        return mode
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "no"
