"""Predicted next to measured: what `tunesmith plan` predicts for this run (peak memory per device, seconds
per optimizer step), beside what the run measured, written into run.json as `state.plan_check`.

The prediction is the planner's own (`plan_recipe` on this machine's device, with the run's data size, its
model config and the checkpointing it chose), so every finished run checks the planner. Measured step time is
the median of the steps after the first (the first also pays one-off costs: allocator growth, lazy kernels,
the first data pages), each step's wall time as the loop logs it (metrics.jsonl `step_seconds`); the first
is recorded apart. Peak memory is `state.peak_memory_mib` (train/peak_memory.py).
"""

from __future__ import annotations

import logging
import statistics
from typing import Any, Protocol

import torch
from accelerate import Accelerator

from tunesmith.errors import UserError
from tunesmith.plan.hardware import GPUS, MIB, Device, cpu_device, gpu_device
from tunesmith.plan.run import plan_recipe, size_of
from tunesmith.plan.setup import compute_dtype
from tunesmith.plan.shape import shape_from_config
from tunesmith.recipe.spec import Recipe
from tunesmith.train.peak_memory import peak_memory
from tunesmith.train.state import TrainState

logger = logging.getLogger(__name__)
SHARDINGS = {"ddp": "ddp", "fsdp2": "fsdp", "zero2": "zero2", "zero3": "zero3"}
"""The recipe's distributed.strategy as the memory model names it."""


def typical_step(seconds: list[float]) -> float | None:
    """Median seconds of the steps after the first (the first alone when there is one)."""
    warm = seconds[1:] or seconds
    return statistics.median(warm) if warm else None


def plan_device(device: torch.device, recipe: Recipe) -> Device | None:
    """The planner's device for where this run trained: this CPU (probed in the run's compute dtype) or a known
    GPU by name and memory; None for a GPU the planner has no figures for."""
    if device.type != "cuda":
        return cpu_device(probe=True, dtype=compute_dtype(recipe))
    name = torch.cuda.get_device_name(device).lower()
    gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    for key, gpu in GPUS.items():
        if key.split("-")[0] in name and abs(gpu.memory_gib - gib) / gpu.memory_gib < 0.1:
            return gpu_device(key)
    return None


def plan_check(recipe: Recipe, config: Any, data_summary: dict[str, Any], state: dict[str, Any],
               device: torch.device, step_seconds: list[float], nproc: int = 1) -> dict[str, Any]:
    """{"predicted", "measured", "ratio" (measured / predicted)} for peak memory (MiB) and seconds per step
    (`step_seconds`: each measured step's, in order)."""
    measured = {"peak_memory_mib": state.get("peak_memory_mib"), "step_seconds": typical_step(step_seconds),
                "first_step_seconds": step_seconds[0] if step_seconds else None, "steps": len(step_seconds)}
    planned = plan_device(device, recipe)
    if planned is None:
        return {"device": torch.cuda.get_device_name(device), "predicted": None, "measured": measured,
                "note": "no figures for this GPU in plan/hardware.py: nothing predicted"}
    try:
        result = plan_recipe(recipe, planned, nproc=nproc, sharding=SHARDINGS[recipe.distributed.strategy],
                             size=size_of(data_summary), shape=shape_from_config(config),
                             checkpointing=bool(state.get("gradient_checkpointing")))
    except (UserError, ValueError, KeyError) as err:  # the run finished: a planner failure is recorded, not raised
        logger.warning("the plan for this run could not be made (%s); run.json records no prediction", err)
        return {"device": planned.name, "predicted": None, "measured": measured, "note": str(err)}
    predicted = {"peak_memory_mib": round(result.chosen.total / MIB, 1),
                 "step_seconds": result.time.step_seconds if result.time else None}
    return {"device": planned.name, "probe_dtype": planned.probe or None, "flops": planned.flops,
            "predicted": predicted, "measured": measured,
            "ratio": {key: _ratio(measured[key], predicted[key]) for key in predicted}}


def _ratio(measured: float | None, predicted: float | None) -> float | None:
    return round(measured / predicted, 3) if measured and predicted else None


class FinishedRun(Protocol):
    """What measure_run reads of a finished run (train/loop.py's Trainer)."""

    recipe: Recipe
    accelerator: Accelerator
    data: Any
    state: TrainState
    metrics: Any


def measure_run(run: FinishedRun, config: Any) -> dict[str, Any]:
    """`peak_memory_mib`/`peak_memory_source` (every rank must call this: the largest is kept) and, on the main
    process, `plan_check`: the plan's prediction beside the measured peak and the steps' `step_seconds`."""
    found = peak_memory(run.accelerator)
    if run.accelerator.is_main_process:
        seconds = [r["step_seconds"] for r in run.metrics.records if "step_seconds" in r]
        found["plan_check"] = plan_check(run.recipe, config, run.data.summary(), {**run.state.to_json(), **found},
                                         run.accelerator.device, seconds, run.accelerator.num_processes)
    return found
