"""`method: grpo` — group relative policy optimisation with reward functions.

    __init__.py   the `grpo:` recipe block, its checks and the registration
    objective.py  Grpo: sample groups, score, advantages within each group
    losses.py     group_advantages, grpo_token_loss
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from tunesmith.methods.rollout_spec import RolloutSpec
from tunesmith.methods.unit import Method, ObjectiveClass

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe


class GrpoSpec(RolloutSpec):
    """`method: grpo`: groups of sampled completions per prompt, advantages normalised within each group."""

    group_size: int = Field(8, ge=2, description="completions sampled per prompt")
    beta: float = Field(0.0, ge=0.0, description="KL penalty to the reference; 0 needs no reference forward")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = Field(
        "grpo", description="how token losses become the step's loss (TRL's loss_type): grpo, each completion's token "
        "mean (DeepSeekMath) | bnpo, the micro-batch's token mean | dr_grpo, the token sum over completions x "
        "max_new_tokens (Dr. GRPO, Liu et al. 2025) | dapo, the token mean over the whole step (DAPO, Yu et al. 2025)")
    importance_sampling_level: Literal["token", "sequence"] = Field(
        "token", description="token: one policy ratio per token | sequence: one per completion, from its mean "
        "log-ratio, clipped as a whole (GSPO, Zheng et al. 2025; TRL's importance_sampling_level)")
    epsilon_high: float | None = Field(
        None, gt=0.0, description="upper clip of the ratio, 1 + epsilon_high (clip_eps stays the lower one); "
        "DAPO's clip-higher uses 0.28 (TRL's epsilon_high); default: clip_eps")
    mask_truncated_completions: bool = Field(
        False, description="completions cut off by max_new_tokens (no eos) train nothing: their tokens leave the "
        "loss, their reward still counts in the group's advantages (DAPO's overlong filtering; TRL's name)")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="advantages divided by the group's reward std | by the std over the step's "
        "completions (PPO Lite) | not divided: Dr. GRPO's unbiased advantage (TRL's scale_rewards)")
    dynamic_sampling: bool = Field(
        False, description="groups whose rewards are all equal (no gradient) leave the step's loss and its count "
        "of completions; metrics log dropped_groups (DAPO's dynamic sampling, without re-sampling; not in TRL)")

    @model_validator(mode="after")
    def _check(self) -> GrpoSpec:
        if self.importance_sampling_level == "sequence" and self.loss_type != "grpo":
            raise ValueError(f"grpo.importance_sampling_level: sequence (GSPO) optimises one ratio per completion and "
                             f"needs loss_type: grpo; {self.loss_type} sums tokens and would weight each completion by "
                             f"its length (TRL warns of the same); set loss_type: grpo or importance_sampling_level: token")
        return self

    @property
    def clip_high(self) -> float:
        """The upper clip of the ratio's excess over 1: epsilon_high, else clip_eps (symmetric, as before)."""
        return self.clip_eps if self.epsilon_high is None else self.epsilon_high


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
