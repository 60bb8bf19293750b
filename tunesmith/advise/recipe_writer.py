"""Write the recipe `advise` recommends: the chosen adapter, with a micro-batch and checkpointing that fit.

The fit comes from the same memory model as `tunesmith plan`: micro-batches 8, 4, 2, 1 are tried without,
then with, gradient checkpointing; the first that fits keeps an effective batch of 8 through grad_accum.
The recipe is validated as a Recipe before it is written, and `tunesmith validate` accepts it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.errors import UserError
from tunesmith.plan.hardware import Device
from tunesmith.plan.memory import TrainSetup, estimate_memory
from tunesmith.plan.shape import ModelShape
from tunesmith.recipe.spec import recipe_from_dict

EFFECTIVE_BATCH = 8
HEADROOM = 0.9
"""Plan to 90% of the device: allocators fragment, and other processes hold some memory."""


def fitting_batch(setup: TrainSetup, memory: int) -> tuple[int, bool] | None:
    """(micro-batch, checkpointing) that fits in `memory`, largest micro-batch first, no checkpointing first."""
    for checkpointing in (False, True):
        for micro in (8, 4, 2, 1):
            if estimate_memory(replace(setup, micro_batch=micro, checkpointing=checkpointing)).total <= HEADROOM * memory:
                return micro, checkpointing
    return None


def adapter_fits(shape: ModelShape, device: Device, seq_len: int) -> dict[str, bool]:
    """For each candidate adapter, whether some micro-batch fits on `device` at `seq_len`."""
    fits = {}
    for adapter in ("full", "lora", "qlora"):
        fits[adapter] = fitting_batch(_setup(shape, adapter, device, seq_len), device.memory) is not None
    return fits


def build_recipe(name: str, model: str, data: str, adapter: str, shape: ModelShape, device: Device,
                 seq_len: int, replay: str | None = None) -> dict[str, Any]:
    """The recipe as a dict, checked by the Recipe schema."""
    chosen = fitting_batch(_setup(shape, adapter, device, seq_len), device.memory)
    if chosen is None:
        raise UserError(f"adapter {adapter} does not fit in {device.memory / 2**30:.1f} GiB even at micro-batch 1 "
                        f"with checkpointing; run `tunesmith plan` on the recipe for what to change")
    micro, checkpointing = chosen
    raw: dict[str, Any] = {
        "name": name, "model": model, "method": "sft", "adapter": adapter,
        "data": {"train": data, "eval": 0.1},
        "train": {"epochs": 2, "batch_size": micro, "grad_accum": max(1, EFFECTIVE_BATCH // micro),
                  "max_seq_len": seq_len, "gradient_checkpointing": checkpointing},
    }
    if ADAPTER_KINDS[adapter].trains_base and replay:
        raw["data"]["replay"] = {"train": replay, "ratio": 0.2}
    recipe_from_dict(raw, source="advise")  # the schema's checks, before anything is written
    return raw


def _setup(shape: ModelShape, adapter: str, device: Device, seq_len: int) -> TrainSetup:
    """Training with `adapter` on `device`: fp32 weights where the base trains, else a bf16 base."""
    dtype = "fp32" if ADAPTER_KINDS[adapter].trains_base else "bf16"
    return TrainSetup(shape=shape, adapter=adapter, weight_dtype=dtype, seq_len=seq_len,
                      runtime_bytes=device.runtime_bytes, on_cpu=device.kind == "cpu")


def write_recipe(raw: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# written by `tunesmith advise`; check it with `tunesmith validate` and `tunesmith plan`\n"
                   + yaml.safe_dump(raw, sort_keys=False))
    return out
