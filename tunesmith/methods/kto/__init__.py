"""`method: kto` — Kahneman-Tversky optimisation: desirable/undesirable answers judged one at a time.

    __init__.py   the `kto:` recipe block, its checks and the registration
    objective.py  Kto
    losses.py     kto_loss, kto_kl
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tunesmith.methods.unit import Method, ObjectiveClass
from tunesmith.recipe.schema import Strict

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe


class KtoSpec(Strict):
    """`method: kto`: desirable/undesirable answers judged one at a time against a batch KL baseline."""

    beta: float = Field(0.1, gt=0.0)
    desirable_weight: float = Field(1.0, gt=0.0, description="raise it when desirable rows are the minority")
    undesirable_weight: float = Field(1.0, gt=0.0)
    precompute_ref: bool = Field(False, description="reference log-probs computed once up front: no frozen copy in memory")


def _checks(recipe: Recipe) -> list[str]:
    if recipe.train.batch_size < 2:
        return ["method: kto estimates its KL baseline from mismatched answers within a micro-batch; "
                "set train.batch_size: 2 or more"]
    return []


def _objective() -> ObjectiveClass:
    from tunesmith.methods.kto.objective import Kto

    return Kto


UNIT = Method("kto", formats=("kto", "preference"), objective=_objective, block=KtoSpec, checks=_checks,
              needs_reference=True)
