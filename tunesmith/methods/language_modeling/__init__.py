"""`method: sft` and `method: cpt` — next-token cross-entropy on the trained tokens (responses, or all text).

    __init__.py    the registration of both names
    objective.py   LanguageModeling: packed batches, token-mean NLL, reaching the output head by the cheapest
                   route (fused, sliced, full logits)
"""

from __future__ import annotations

from tunesmith.methods.unit import Method, ObjectiveClass


def _objective() -> ObjectiveClass:
    from tunesmith.methods.language_modeling.objective import LanguageModeling

    return LanguageModeling


def _sft_objective() -> ObjectiveClass:
    from tunesmith.methods.language_modeling.objective import sft_objective

    return sft_objective


SFT = Method("sft", formats=("alpaca", "sharegpt", "messages", "prompt_completion"), objective=_sft_objective,
             trains_on_samples=True, runs_sharded=True)
"""Conversations: the loss on the assistant turns (data.train_on)."""
CPT = Method("cpt", formats=("text",), objective=_objective, trains_on_samples=True, runs_sharded=True)
"""Raw text: the loss on every token."""

FUSED_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3",
                            "gpt2", "gpt_neox"})
"""Families checked to compute `head(decoder(...).last_hidden_state)` and nothing more (tests/test_lm_head.py):
the fused loss takes their head (objective.py), and `plan` counts one chunk of logits for them. Defined here,
light, so `plan` reads it without importing torch."""
