"""Every training method, one unit each (unit.py says what a unit holds); registered here in one line each.

Adding a method: a folder `tunesmith/methods/<name>/` with `__init__.py` (its recipe block and
`UNIT = Method(...)`), `objective.py` and `losses.py`, then one line in METHODS below. The recipe schema gains
the `<name>:` block, `method: <name>` becomes valid, `tunesmith train` builds its objective and the planner
reads its facts, all from this tuple.

Registration is a plain tuple of imported records, no module named in a string: a typo fails at import,
and a reader (or a type checker) follows each line to its unit. The recipe schema imports this module, so
each record stays light (pydantic only): a unit's objective, which needs torch, is imported inside the
unit's `objective` function, when a run builds it. `shared/` holds what several methods' objectives use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.methods import dpo, grpo, kto, language_modeling, orpo, ppo, reward
from tunesmith.methods.unit import Method

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe
    from tunesmith.train.objective import Objective

METHODS: tuple[Method, ...] = (
    language_modeling.SFT,
    language_modeling.CPT,
    dpo.UNIT,
    orpo.UNIT,
    kto.UNIT,
    grpo.UNIT,
    reward.UNIT,
    ppo.UNIT,
)

BY_NAME: dict[str, Method] = {method.name: method for method in METHODS}
METHOD_NAMES: tuple[str, ...] = tuple(BY_NAME)
METHOD_FORMATS: dict[str, tuple[str, ...]] = {method.name: method.formats for method in METHODS}
"""Which data formats each method can train on."""


def build_objective(recipe: Recipe, data: Any, tokenizer: Any, model: Any) -> Objective:
    """The objective for `recipe.method` (the recipe has checked the name against METHOD_NAMES)."""
    return BY_NAME[recipe.method].build(recipe, data, tokenizer, model)
