"""`tunesmith plan`: peak memory (by part) and time per epoch of a recipe on a device, before training.

The memory model (memory.py) is also what `train.gradient_checkpointing: auto` decides with
(checkpointing.py), so the plan and the trainer agree by construction.
"""

from __future__ import annotations

from tunesmith.plan.hardware import Device, cpu_device
from tunesmith.plan.memory import MemoryEstimate, estimate_memory
from tunesmith.plan.setup import setup_from_recipe
from tunesmith.plan.shape import load_shape
from tunesmith.recipe.spec import Recipe


def plan_memory_for(recipe: Recipe, device: Device | None = None) -> MemoryEstimate:
    """The memory estimate of `recipe` as written (checkpointing auto counts as off), on this CPU by default."""
    device = device or cpu_device(probe=False)
    shape = load_shape(recipe.model, recipe.model_options.trust_remote_code)
    return estimate_memory(setup_from_recipe(recipe, shape, device))
