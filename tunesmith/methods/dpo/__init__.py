"""`method: dpo` — direct preference optimisation and its variants (IPO, hinge/SLiC, SimPO).

    __init__.py   the `dpo:` recipe block and the registration
    objective.py  Dpo: pairs vs the reference, in the shared loop
    losses.py     dpo_loss (pinned to TRL)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunesmith.methods.unit import Method, ObjectiveClass
from tunesmith.recipe.schema import Strict


class DpoSpec(Strict):
    """`method: dpo`: direct preference optimisation; `loss` picks the variant (sigmoid is the DPO paper's)."""

    loss: Literal["sigmoid", "ipo", "hinge", "simpo"] = Field("sigmoid", description="sigmoid (DPO) | ipo | hinge (SLiC) | simpo")
    beta: float = Field(0.1, gt=0.0, description="pull towards the reference; SimPO papers use ~2.0")
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="share of labels assumed flipped (cDPO); sigmoid/simpo")
    reference_free: bool = Field(False, description="score against a uniform reference: no reference forward")
    precompute_ref: bool = Field(False, description="reference log-probs computed once up front: no frozen copy in memory")
    simpo_gamma: float = Field(0.5, ge=0.0, description="SimPO target reward margin")

    @model_validator(mode="after")
    def _check(self) -> DpoSpec:
        if self.label_smoothing and self.loss not in ("sigmoid", "simpo"):
            raise ValueError(f"dpo.label_smoothing applies to dpo.loss sigmoid or simpo, not {self.loss}; remove it")
        if self.precompute_ref and (self.reference_free or self.loss == "simpo"):
            raise ValueError("dpo.precompute_ref: this loss uses no reference model; remove precompute_ref")
        return self


def _objective() -> ObjectiveClass:
    from tunesmith.methods.dpo.objective import Dpo

    return Dpo


UNIT = Method("dpo", formats=("preference",), objective=_objective, block=DpoSpec, needs_reference=True,
              sequences_per_unit=2)
