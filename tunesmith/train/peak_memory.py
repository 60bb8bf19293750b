"""The run's peak memory, recorded in run.json at the end of training (the runs table and `compare` show it).

On an accelerator it is the device's peak allocated memory (`torch.cuda.max_memory_allocated`: tensors, not
the allocator's cache); on CPU, the process's peak resident set (`ru_maxrss`), which is the training's whole
footprint when `tunesmith train` runs alone in its process (a test calling `train()` in-process also counts
what it held before). With several processes it is the largest of them: memory per device is what must fit.
"""

from __future__ import annotations

import resource
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

DEVICE_SOURCE, HOST_SOURCE = "device peak allocated", "process peak resident set"


def local_peak_mib(device: torch.device) -> tuple[float, str]:
    """This process's peak memory in MiB and what it measures."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, DEVICE_SOURCE
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, HOST_SOURCE  # Linux: KiB


def peak_memory(accelerator: Accelerator) -> dict[str, Any]:
    """{"peak_memory_mib", "peak_memory_source"}: the largest over all processes (every rank must call it)."""
    mine = local_peak_mib(accelerator.device)
    everyone = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    mib, source = max(everyone)
    return {"peak_memory_mib": round(mib, 1), "peak_memory_source": source}
