"""What defines a training method: its name, the data it trains on, its recipe block, its objective.

Each method is one folder under `tunesmith/methods/`: `__init__.py` holds its recipe block and its `Method`
record (light: importable by the recipe schema), `objective.py` its objective (what the shared loop calls),
`losses.py` its pure loss functions. `tunesmith/methods/__init__.py` registers each unit in one line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.recipe.schema import Strict

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe
    from tunesmith.train.objective import Objective


@dataclass(frozen=True)
class Method:
    """One `method:` value of the recipe."""

    name: str
    formats: tuple[str, ...]
    """The data formats it can train on (data/formats.py)."""
    objective: str
    """`module:Class` of its objective, imported only when a run builds it (keeps the schema import light)."""
    block: type[Strict] | None = None
    """Its recipe block (the key is `name`), or None when it has no settings of its own."""
    checks: Callable[[Recipe], list[str]] | None = None
    """Cross-field problems of a recipe using this method, each phrased as what to change."""

    def build(self, recipe: Recipe, data: Any, tokenizer: Any, model: Any) -> Objective:
        """The objective for a run of this method."""
        module, _, name = self.objective.partition(":")
        return getattr(importlib.import_module(module), name)(recipe, data, tokenizer, model)

    def problems(self, recipe: Recipe) -> list[str]:
        return self.checks(recipe) if self.checks else []
