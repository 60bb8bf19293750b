"""`adapter: full`: every weight trains; the run saves a standalone model, not an adapter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.adapters.unit import Adapter, Combination, MemoryTerms, Serving

if TYPE_CHECKING:
    from tunesmith.recipe.spec import AdapterArgs


def _unfreeze(model: Any, args: AdapterArgs) -> Any:
    for param in model.parameters():
        param.requires_grad_(True)
    return model


FULL = Adapter(
    "full", "every weight trains (fp32 masters under autocast); saves a standalone model",
    MemoryTerms(parameters=lambda shape, r: 0, lighter=("lora", "qlora")),
    Serving.MODEL, wrap=_unfreeze, trains_base=True, reference_by_disabling=False, runs_sharded=True,
    reads_pictures=True, combination=Combination.WEIGHT_DELTAS,
)
