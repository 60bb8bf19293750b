"""`method: orpo` — odds-ratio preference optimisation: SFT plus a penalty on the rejected answer, no reference.

    __init__.py   the `orpo:` recipe block and the registration
    objective.py  Orpo
    losses.py     orpo_loss
"""

from __future__ import annotations

from pydantic import Field

from tunesmith.methods.unit import Method, ObjectiveClass
from tunesmith.recipe.schema import Strict


class OrpoSpec(Strict):
    """`method: orpo`: SFT on the chosen answer plus an odds-ratio penalty on the rejected one; no reference."""

    beta: float = Field(0.1, gt=0.0, description="weight of the odds-ratio term (lambda in the paper)")


def _objective() -> ObjectiveClass:
    from tunesmith.methods.orpo.objective import Orpo

    return Orpo


UNIT = Method("orpo", formats=("preference",), objective=_objective, block=OrpoSpec, sequences_per_unit=2)
