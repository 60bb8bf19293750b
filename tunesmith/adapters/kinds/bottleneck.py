"""`adapter: bottleneck`: Houlsby adapter layers after attention and MLP (`bottleneck_size` wide), tunesmith's own
module (adapters/bottleneck.py: PEFT has none), saved in its own two files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.adapters.unit import Adapter, MemoryTerms, Serving

if TYPE_CHECKING:
    from tunesmith.plan.shape import ModelShape
    from tunesmith.recipe.spec import AdapterArgs

CONFIG_FILE = "bottleneck_config.json"
"""What marks a bottleneck adapter folder (written by save_bottleneck)."""
SIZE_PLANNED = 64
"""The bottleneck width the memory model assumes (the recipe's default)."""


def _add(model: Any, args: AdapterArgs) -> Any:
    from tunesmith.adapters.bottleneck import add_bottleneck

    return add_bottleneck(model, args.bottleneck_size, args.dropout)


def _save(model: Any, folder: Path) -> None:
    from tunesmith.adapters.bottleneck import save_bottleneck

    save_bottleneck(model, folder)


def _load(model: Any, folder: Path) -> Any:
    from tunesmith.adapters.bottleneck import load_bottleneck

    return load_bottleneck(model, folder)


def _parameters(shape: ModelShape, r: int) -> int:
    """Two adapters per layer, each down (hidden x size + size) and up (size x hidden + hidden)."""
    return shape.layers * 2 * (2 * shape.hidden * SIZE_PLANNED + shape.hidden + SIZE_PLANNED)


BOTTLENECK = Adapter(
    "bottleneck", "Houlsby adapter layers after attention and MLP (bottleneck_size wide)",
    MemoryTerms(parameters=_parameters), Serving.OWN_MODEL, wrap=_add, config_file=CONFIG_FILE, save=_save, load=_load,
    reference_by_disabling=False,
    merge_refusal="bottleneck adapters are new layers (down-projection, GELU, up-projection); the GELU between "
                  "the projections makes them nonlinear, so no change of the existing linear weights equals them",
    vllm_refusal="bottleneck layers are tunesmith's own module, unknown to vLLM",
)
