"""`method: sft` and `method: cpt` — next-token cross-entropy on the trained tokens (responses, or all text).

    __init__.py    the registration of both names
    objective.py   LanguageModeling: packed batches, token-mean NLL
    loss_route.py  how the loss reaches the output head, cheapest route first (fused, sliced, full logits)
"""

from __future__ import annotations

from tunesmith.methods.unit import Method
from tunesmith.recipe.registry import CHAT_FORMATS

_OBJECTIVE = "tunesmith.methods.language_modeling.objective:LanguageModeling"
SFT = Method("sft", formats=CHAT_FORMATS, objective=_OBJECTIVE)
CPT = Method("cpt", formats=("text",), objective=_OBJECTIVE)
