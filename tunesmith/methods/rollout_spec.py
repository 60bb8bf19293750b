"""The recipe settings GRPO and PPO share: sampling completions and scoring them with rewards."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from tunesmith.registry import REWARDS
from tunesmith.schema import Strict, unknown_value


class RewardFnSpec(Strict):
    """One reward term: a built-in name or `module:function`, with its weight and options."""

    name: str = Field(description=" | ".join(REWARDS) + " | module:function")
    weight: float = 1.0
    pattern: str | None = Field(None, description="regular expression (regex reward only)")
    max_chars: int | None = Field(None, gt=0, description="length the length_penalty starts at (default 200)")

    @model_validator(mode="after")
    def _check(self) -> RewardFnSpec:
        if self.name not in REWARDS and ":" not in self.name:
            raise ValueError(unknown_value("rewards", self.name, REWARDS) + ", or a module:function of your own")
        if (self.pattern is None) == (self.name == "regex"):
            raise ValueError("rewards: the regex reward needs a pattern ({name: regex, pattern: '...'}), no other does")
        if self.max_chars is not None and self.name != "length_penalty":
            raise ValueError(f"rewards: max_chars applies to length_penalty only, not {self.name}; remove it")
        return self


class RolloutSpec(Strict):
    """What GRPO and PPO share: sampling completions and scoring them."""

    rewards: list[RewardFnSpec] = Field(default_factory=list, description="reward names, or {name, weight, ...}")
    reward_field: str = Field("answer", description="the row field the answer-matching rewards compare with")
    max_new_tokens: int = Field(64, gt=0)
    temperature: float = Field(1.0, gt=0.0)
    clip_eps: float = Field(0.2, gt=0.0, description="policy ratio clip")
    iterations: int = Field(1, gt=0, description="optimizer steps taken on each batch of rollouts")

    @field_validator("rewards", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """A plain name is shorthand for {name: NAME}."""
        return [{"name": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value
