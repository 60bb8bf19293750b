"""Method name (recipe `method:`) -> the objective that trains it."""

from __future__ import annotations

from typing import Any

from tunesmith.data.pipeline import PreparedData
from tunesmith.kernels import needs_flat_batches
from tunesmith.recipe import Recipe
from tunesmith.train.grpo import Grpo
from tunesmith.train.language_modeling import LanguageModeling
from tunesmith.train.objective import Objective
from tunesmith.train.ppo import Ppo
from tunesmith.train.preference import Dpo, Kto, Orpo
from tunesmith.train.reward_model import RewardTraining

ALIGNMENT: dict[str, Any] = {"dpo": Dpo, "orpo": Orpo, "kto": Kto, "reward": RewardTraining, "grpo": Grpo, "ppo": Ppo}
"""Objectives built from (recipe, data, tokenizer, model): they need the model for a reference or a head."""


def build_objective(recipe: Recipe, data: PreparedData, tokenizer: Any, model: Any) -> Objective:
    """The objective for `recipe.method` (the recipe has checked the name against registry.METHODS)."""
    if recipe.method in ("sft", "cpt"):
        return LanguageModeling(recipe, data, tokenizer.pad_token_id, flat=needs_flat_batches(model))
    return ALIGNMENT[recipe.method](recipe, data, tokenizer, model)
