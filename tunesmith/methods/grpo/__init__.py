"""`method: grpo` — group relative policy optimisation with reward functions.

    __init__.py   the `grpo:` recipe block, its checks and the registration
    objective.py  Grpo: sample groups, score, advantages within each group
    losses.py     group_advantages, grpo_token_loss
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tunesmith.methods.rollout_spec import RolloutSpec
from tunesmith.methods.unit import Method, ObjectiveClass

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe


class GrpoSpec(RolloutSpec):
    """`method: grpo`: groups of sampled completions per prompt, advantages normalised within each group."""

    group_size: int = Field(8, ge=2, description="completions sampled per prompt")
    beta: float = Field(0.0, ge=0.0, description="KL penalty to the reference; 0 needs no reference forward")


def _checks(recipe: Recipe) -> list[str]:
    if recipe.grpo is None or not recipe.grpo.rewards:
        return ["method: grpo needs reward functions; add grpo: {rewards: [exact_match]} (or module:function)"]
    return []


def _group(recipe: Recipe) -> int:
    return recipe.grpo.group_size if recipe.grpo is not None else GrpoSpec().group_size


def _objective() -> ObjectiveClass:
    from tunesmith.methods.grpo.objective import Grpo

    return Grpo


UNIT = Method("grpo", formats=("prompt",), objective=_objective, block=GrpoSpec, checks=_checks,
              generates_rollouts=True, sequences_per_unit=_group)
