"""`method: ppo` — RLHF: a value head, a KL-penalised reward (a reward model and/or functions) and GAE.

    __init__.py   the `ppo:` recipe block, its checks and the registration
    objective.py  Ppo
    losses.py     gae, whiten, clipped_value_loss
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tunesmith.methods.rollout_spec import RolloutSpec
from tunesmith.methods.unit import Method, ObjectiveClass

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe


class PpoSpec(RolloutSpec):
    """`method: ppo`: RLHF with a value head, a KL-penalised reward and GAE."""

    reward_model: str | None = Field(None, description="run folder of a `method: reward` run")
    kl_coef: float = Field(0.05, ge=0.0, description="per-token KL penalty to the reference, in reward units")
    vf_coef: float = Field(0.1, gt=0.0, description="weight of the value loss")
    value_clip: float = Field(0.2, gt=0.0)
    gamma: float = Field(1.0, gt=0.0, le=1.0)
    lam: float = Field(0.95, ge=0.0, le=1.0, description="GAE lambda")


def _checks(recipe: Recipe) -> list[str]:
    if recipe.ppo is None or (not recipe.ppo.rewards and recipe.ppo.reward_model is None):
        return ["method: ppo needs a reward; add ppo: {reward_model: runs/<reward run>} or ppo: {rewards: [...]}"]
    return []


def _objective() -> ObjectiveClass:
    from tunesmith.methods.ppo.objective import Ppo

    return Ppo


UNIT = Method("ppo", formats=("prompt",), objective=_objective, block=PpoSpec, checks=_checks,
              needs_reference=True, generates_rollouts=True)
