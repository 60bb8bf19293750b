"""The recipe settings GRPO and PPO share: sampling completions and scoring them with rewards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from tunesmith.methods.shared.rewards import REWARDS
from tunesmith.recipe.schema import Strict
from tunesmith.recipe.user_code import NO_USER_CODE, UserCode


class RewardFnSpec(Strict):
    """One reward term: a built-in name, or a function of a file given with --rewards-file, with its weight and options."""

    name: str = Field(description=" | ".join(REWARDS) + " | function or file_stem:function of a file given on the "
                      "command line with --rewards-file FILE (a recipe cannot import modules or files itself)")
    weight: float = 1.0
    pattern: str | None = Field(None, description="regular expression (regex reward only)")
    max_chars: int | None = Field(None, gt=0, description="length the length_penalty starts at (default 200)")
    _source: tuple[Path, str] | None = PrivateAttr(None)
    """(file, function) of a user's reward, resolved against the command line's files at validation."""

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> RewardFnSpec:
        if self.name not in REWARDS:
            code: UserCode = (info.context or {}).get("user_code", NO_USER_CODE)
            self._source = code.resolve("rewards", self.name, REWARDS)
        if (self.pattern is None) == (self.name == "regex"):
            raise ValueError("rewards: the regex reward needs a pattern ({name: regex, pattern: '...'}), no other does")
        if self.max_chars is not None and self.name != "length_penalty":
            raise ValueError(f"rewards: max_chars applies to length_penalty only, not {self.name}; remove it")
        return self

    @property
    def source(self) -> tuple[Path, str] | None:
        """(file, function) of a user's reward given on the command line; None for a built-in or a recorded name."""
        return self._source


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
