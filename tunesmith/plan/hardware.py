"""The device a plan is for: its memory, its speed, and what the framework itself takes.

GPU figures are the vendors' dense bf16 (fp16 for pre-Ampere) tensor throughput and memory. Achieved
model-FLOP utilisation is not a vendor figure: `GPU_MFU` is an assumption (0.4 is what well-tuned
fine-tuning reaches on A100/H100-class GPUs in published runs), to be replaced by a measured run's. On CPU
the plan measures the machine: a short matmul probe in the dtype the run computes in (plan/setup.py's
`compute_dtype`, the trainer's own rule: a CPU without native bf16 trains fp32, and there an emulated bf16
probe would read ~20x too slow), times the share of that peak training reaches in that dtype (CPU_MFU).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import UserError, suggestion

if TYPE_CHECKING:
    import torch

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Gpu:
    memory_gib: float
    tflops: float


GPUS: dict[str, Gpu] = {
    "h200-141g": Gpu(141, 989), "h100-80g": Gpu(80, 989), "h100-94g": Gpu(94, 989), "a100-80g": Gpu(80, 312),
    "a100-40g": Gpu(40, 312), "l40s-48g": Gpu(48, 362), "a6000-48g": Gpu(48, 155), "l4-24g": Gpu(24, 121),
    "a10g-24g": Gpu(24, 125), "rtx4090-24g": Gpu(24, 165), "rtx3090-24g": Gpu(24, 71), "v100-32g": Gpu(32, 125),
    "v100-16g": Gpu(16, 125), "t4-16g": Gpu(16, 65), "mi300x-192g": Gpu(192, 1307),
}
GPU_MFU = 0.4
CPU_MFU = {"fp32": 0.6, "bf16": 0.16, "fp16": 0.16}
"""Share of the probe's matmul rate a training step reaches on CPU, per compute dtype. fp32: 53-82% of the fp32
peak (bench/RESULTS.md, Throughput II: LoRA and full, 20M and 60M Llama, AVX2). bf16 on AMX/AVX-512-bf16,
whose matmul peak is far higher while the step's other work (norms, softmax, optimizer, fp32 master weights)
is not: 26% for a 20M Llama's LoRA (bench), 12-14% for SmolLM2-135M (LoRA and full, batch 8 x 128, measured
in CPU seconds on one thread so that other processes on the machine do not count); 0.16 keeps both within
1.7x."""
CUDA_CONTEXT_BYTES = 600 * MIB
"""CUDA context, cuBLAS workspaces and the caching allocator's slack, per process (typical, measured by users
at 0.4-1 GiB)."""
CPU_RUNTIME_BYTES = 450 * MIB
"""Resident memory of a training process before the model loads: Python, torch, transformers, PEFT, the
tokenizer and the data (measured before `build_trainer`, bench/plan_accuracy.py runs: 452 MiB)."""
HOST_RUNTIME_BYTES = 3 * GIB
"""Host memory of one GPU training process besides the weights: the CPU runtime plus CUDA's host libraries."""


@dataclass(frozen=True)
class Device:
    """Where training runs: `memory` bytes per device, `flops` achievable per second, `kind` cpu or cuda."""

    name: str
    kind: str
    memory: int
    flops: float
    runtime_bytes: int
    probe: str = ""
    """The dtype of the matmul probe `flops` was measured with ("" when it is a vendor figure or unmeasured)."""


def parse_bytes(text: str) -> int:
    """'24GiB' / '24G' / '80GB' / '512MiB' -> bytes (GB read as GiB, as GPU makers mean it)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise UserError(f"--memory '{text}': give a size such as 24GiB, 80G or 512MiB")
    scale = {"": 1, "k": 1 << 10, "m": MIB, "g": GIB, "t": 1 << 40}[match.group(2)]
    return int(float(match.group(1)) * scale)


def gpu_device(name: str) -> Device:
    key = name.lower()
    if key not in GPUS:
        aliases: dict[str, str] = {}
        for full in GPUS:
            aliases.setdefault(full.split("-")[0], full)  # the first listed size of a model
        if key in aliases:
            key = aliases[key]
        else:
            raise UserError(f"--gpu '{name}' is unknown{suggestion(key, list(GPUS))}; choose one of "
                            f"{', '.join(GPUS)}, or give --memory 24GiB")
    gpu = GPUS[key]
    return Device(key, "cuda", int(gpu.memory_gib * GIB), gpu.tflops * 1e12 * GPU_MFU, CUDA_CONTEXT_BYTES)


def memory_device(memory: str, flops: float | None = None, dtype: torch.dtype | None = None) -> Device:
    """A device known only by its memory; its speed is this machine's CPU (a `dtype` probe) unless given."""
    if flops:
        return Device(f"{memory} device", "cuda", parse_bytes(memory), flops, CUDA_CONTEXT_BYTES)
    return Device(f"{memory} device", "cuda", parse_bytes(memory), cpu_flops(dtype=dtype), CUDA_CONTEXT_BYTES,
                  dtype_name(dtype))


def cpu_device(probe: bool = True, dtype: torch.dtype | None = None) -> Device:
    """This machine's CPU: MemAvailable as memory, the measured `dtype` matmul rate times CPU_MFU as speed (0
    when `probe` is off: memory only)."""
    flops = cpu_flops(dtype=dtype) if probe else 0.0
    return Device("this CPU", "cpu", available_host_bytes() or 0, flops, CPU_RUNTIME_BYTES,
                  dtype_name(dtype) if probe else "")


def available_host_bytes() -> int | None:
    """The kernel's MemAvailable, or None where /proc is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_flops(seconds: float = 0.2, dtype: torch.dtype | None = None) -> float:
    """Achievable training FLOP/s on this CPU: a matmul probe's rate in `dtype` (the run's compute dtype; bf16
    when not given) times CPU_MFU."""
    import torch

    dtype = dtype or torch.bfloat16
    return matmul_rate(seconds, dtype) * CPU_MFU[dtype_name(dtype)]


def dtype_name(dtype: torch.dtype | None) -> str:
    """'bf16', 'fp16' or 'fp32' for the probe's dtype (bf16 when not given, as cpu_flops)."""
    import torch

    return {torch.float32: "fp32", torch.float16: "fp16"}.get(dtype, "bf16")  # type: ignore[arg-type]


def matmul_rate(seconds: float, dtype: torch.dtype) -> float:
    """FLOP/s of repeated 512 x 512 matmuls in `dtype` for about `seconds`."""
    import torch

    a = torch.randn(512, 512, dtype=dtype)
    a @ a
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ a
        count += 1
    return 2 * 512**3 * count / (time.perf_counter() - start)
