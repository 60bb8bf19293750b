"""Every training method, one unit each (unit.py says what a unit holds); registered here in one line each.

Adding a method: a folder `tunesmith/methods/<name>/` with `__init__.py` (its recipe block and
`UNIT = Method(...)`), `objective.py` and `losses.py`, then one line below. The recipe schema gains the
`<name>:` block, `method: <name>` becomes valid, and `tunesmith train` builds its objective, from this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.methods import dpo, grpo, kto, language_modeling, orpo, ppo, reward
from tunesmith.methods.unit import Method

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe
    from tunesmith.train.objective import Objective

UNITS: tuple[Method, ...] = (
    language_modeling.SFT,
    language_modeling.CPT,
    dpo.UNIT,
    orpo.UNIT,
    kto.UNIT,
    grpo.UNIT,
    reward.UNIT,
    ppo.UNIT,
)

BY_NAME: dict[str, Method] = {unit.name: unit for unit in UNITS}
METHODS: tuple[str, ...] = tuple(BY_NAME)
METHOD_FORMATS: dict[str, tuple[str, ...]] = {unit.name: unit.formats for unit in UNITS}
"""Which data formats each method can train on."""
METHOD_BLOCKS: dict[str, Any] = {unit.name: unit.block for unit in UNITS if unit.block is not None}
"""Recipe blocks named after their method (`dpo:`, `grpo:`, ...)."""


def build_objective(recipe: Recipe, data: Any, tokenizer: Any, model: Any) -> Objective:
    """The objective for `recipe.method` (the recipe has checked the name against METHODS)."""
    return BY_NAME[recipe.method].build(recipe, data, tokenizer, model)
