"""The methods `tunesmith merge A B ... --method M` combines runs with: one table of records, one per method.

LoRA runs combine through PEFT's `add_weighted_adapter` (its `combination_type` is the record's `peft_name`).
Its ties, dare_* and magnitude_prune act on each adapter's A and B matrices apart, so the merged update
(B1 + B2)(A1 + A2) carries cross terms B1·A2 + B2·A1 that neither run learned; the `_svd` variants apply the
same method to each run's full update B·A and factor the result back to a LoRA by SVD (cat and svd are the
exact weighted sum). `bench/merge_skills.py` measures what this does to two skills.
full fine-tunes combine per weight tensor on their task vectors (run weights minus base weights) through
`peft.utils.merge_utils` (task arithmetic, TIES, DARE, magnitude pruning), and SLERP, which PEFT lacks, is
the small function below (mergekit's formula).

Why not mergekit for full models: its metadata (0.1.5) accepts transformers 5.x and peft 0.21, so it would
install here, but it would be a new runtime dependency (LGPL-3.0, plus `immutables` and its own YAML
config and model-loading layer) for the same arithmetic PEFT already ships: PEFT's merge utilities implement
TIES and DARE as mergekit does, and the tests pin tunesmith's results to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tunesmith.adapters.unit import Combination
from tunesmith.errors import UserError, suggestion

DeltaMerge = Callable[[list[torch.Tensor], torch.Tensor, float], torch.Tensor]
"""(task vectors of one weight, per-run weights, density) -> the merged task vector."""


@dataclass(frozen=True)
class MergeMethod:
    """One `--method` value: what it does and which runs it can combine."""

    name: str
    summary: str
    kinds: frozenset[Combination]
    """The combinations (adapters/unit.py) it applies to: LoRA factors, full-weight deltas, or both."""
    peft_name: str | None = None
    """PEFT's add_weighted_adapter combination_type for LoRA runs."""
    deltas: DeltaMerge | None = None
    """How it merges full runs' task vectors; None with `interpolates`."""
    interpolates: bool = False
    """It interpolates two runs' weights themselves (SLERP), not task vectors: exactly two runs."""
    uses_density: bool = False
    """It prunes each task vector to `--density` of its entries (TIES, DARE, magnitude pruning)."""
    same_rank: bool = False
    """PEFT combines LoRA A and B matrices entry by entry: every adapter must have the same rank."""
    random: bool = False
    """It drops entries at random (DARE): `--seed` makes it repeatable."""


def _utils() -> object:
    import peft.utils.merge_utils as utils

    return utils


def _task_arithmetic(deltas: list[torch.Tensor], weights: torch.Tensor, density: float) -> torch.Tensor:
    return _utils().task_arithmetic(deltas, weights)


def _ties(deltas: list[torch.Tensor], weights: torch.Tensor, density: float) -> torch.Tensor:
    return _utils().ties(deltas, weights, density)


def _dare_linear(deltas: list[torch.Tensor], weights: torch.Tensor, density: float) -> torch.Tensor:
    return _utils().dare_linear(deltas, weights, density)


def _dare_ties(deltas: list[torch.Tensor], weights: torch.Tensor, density: float) -> torch.Tensor:
    return _utils().dare_ties(deltas, weights, density)


def _magnitude_prune(deltas: list[torch.Tensor], weights: torch.Tensor, density: float) -> torch.Tensor:
    return _utils().magnitude_prune(deltas, weights, density)


_BOTH = frozenset({Combination.LORA_FACTORS, Combination.WEIGHT_DELTAS})
_LORA = frozenset({Combination.LORA_FACTORS})
_FULL = frozenset({Combination.WEIGHT_DELTAS})

METHODS: tuple[MergeMethod, ...] = (
    MergeMethod("linear", "weighted sum (LoRA: of A and B apart, so cross terms appear; full: task arithmetic)",
                _BOTH, peft_name="linear", deltas=_task_arithmetic, same_rank=True),
    MergeMethod("cat", "LoRA only: A and B concatenated, the exact weighted sum of the updates (rank adds up)",
                _LORA, peft_name="cat"),
    MergeMethod("svd", "LoRA only: the exact weighted sum of the updates, cut back to the largest rank by SVD",
                _LORA, peft_name="svd"),
    MergeMethod("ties", "trim each to its largest --density entries, elect a sign per entry, average the agreeing",
                _BOTH, peft_name="ties", deltas=_ties, uses_density=True, same_rank=True),
    MergeMethod("dare_linear", "drop entries at random (keep --density, rescale), then weighted sum",
                _BOTH, peft_name="dare_linear", deltas=_dare_linear, uses_density=True, same_rank=True, random=True),
    MergeMethod("dare_ties", "drop entries at random (keep --density, rescale), then TIES' sign election",
                _BOTH, peft_name="dare_ties", deltas=_dare_ties, uses_density=True, same_rank=True, random=True),
    MergeMethod("magnitude_prune", "keep each one's largest --density entries, then weighted sum",
                _BOTH, peft_name="magnitude_prune", deltas=_magnitude_prune, uses_density=True, same_rank=True),
    MergeMethod("ties_svd", "LoRA only: TIES on each full update B·A (not on A and B apart), cut back to the largest "
                "rank by SVD", _LORA, peft_name="ties_svd", uses_density=True),
    MergeMethod("dare_linear_svd", "LoRA only: DARE then weighted sum on each full update B·A, cut back by SVD",
                _LORA, peft_name="dare_linear_svd", uses_density=True, random=True),
    MergeMethod("dare_ties_svd", "LoRA only: DARE then TIES' sign election on each full update B·A, cut back by SVD",
                _LORA, peft_name="dare_ties_svd", uses_density=True, random=True),
    MergeMethod("magnitude_prune_svd", "LoRA only: magnitude pruning then weighted sum on each full update B·A, cut "
                "back by SVD", _LORA, peft_name="magnitude_prune_svd", uses_density=True),
    MergeMethod("slerp", "full runs only, two of them: spherical interpolation of their weights, t = w2 / (w1 + w2)",
                _FULL, interpolates=True),
)
BY_NAME: dict[str, MergeMethod] = {method.name: method for method in METHODS}


def merge_method(name: str) -> MergeMethod:
    """The record of `--method name`; a UserError with a did-you-mean and the list when there is none."""
    method = BY_NAME.get(name)
    if method is None:
        raise UserError(f"--method '{name}' is unknown{suggestion(name, list(BY_NAME))}; use one of: "
                        f"{', '.join(BY_NAME)}")
    return method


def slerp(t: float, v0: torch.Tensor, v1: torch.Tensor, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation from `v0` (t=0) to `v1` (t=1) along the arc between their directions, with
    their own norms kept in the mix (mergekit's formula); nearly parallel tensors are interpolated linearly,
    where the arc's sine would divide by almost zero."""
    a, b = v0.double().flatten(), v1.double().flatten()
    dot = torch.dot(a / a.norm().clamp_min(1e-12), b / b.norm().clamp_min(1e-12)).clamp(-1.0, 1.0)
    if dot.abs() > dot_threshold:
        mixed = (1 - t) * a + t * b
    else:
        theta = torch.arccos(dot)
        mixed = (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)
    return mixed.reshape(v0.shape).to(v0.dtype)
