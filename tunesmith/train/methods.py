"""Method name (recipe `method:`) -> the objective that trains it."""

from __future__ import annotations

from typing import Any

from tunesmith.data.pipeline import PreparedData
from tunesmith.errors import UserError
from tunesmith.recipe import Recipe
from tunesmith.train.language_modeling import LanguageModeling
from tunesmith.train.objective import Objective


def build_objective(recipe: Recipe, data: PreparedData, tokenizer: Any, model: Any) -> Objective:
    """The objective for `recipe.method`; methods not built yet fail before any work is done."""
    if recipe.method in ("sft", "cpt"):
        return LanguageModeling(recipe, data, tokenizer.pad_token_id)
    raise UserError(f"method: {recipe.method} cannot be trained by this version yet; available: sft, cpt")
