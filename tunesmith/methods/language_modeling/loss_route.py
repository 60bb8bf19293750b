"""How the SFT/CPT loss reaches the model's output head, cheapest route first.

1. Fused: run the decoder, take the final hidden states at trained positions only, and compute the head
   and the cross-entropy chunk by chunk (`train/token_nll.fused_linear_nll_sum`): no (tokens x vocabulary) logits
   are ever held. Only for families whose forward is exactly `decoder -> linear head (-> softcap)`, a
   plain `nn.Linear` head (not one wrapped by an adapter), and no wrapper that hooks the forward (DDP,
   FSDP), since the decoder is called directly.
2. Sliced: `model(..., logits_to_keep=mask)`: transformers computes logits at trained positions only.
3. Full logits, for models whose forward takes neither.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from tunesmith.methods.language_modeling import FUSED_FAMILIES
from tunesmith.methods.shared.token_nll import (
    fused_linear_nll_sum,
    kept_nll_sum,
    predicting_positions,
    token_nll_sum,
    trained_targets,
)
from tunesmith.train.unwrap import unwrap_to_transformers


@dataclass
class FusedHead:
    decoder: torch.nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    softcap: float | None


def trained_nll_sum(model: torch.nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                    positional: bool = True) -> torch.Tensor:
    """Summed NLL (fp32, with grad) of the trained tokens of `labels`, by the cheapest route `model` allows.

    `positional=False` forces full logits: with prompt-learning adapters the model's positions are not
    the batch's (virtual tokens come first), so per-position selection would pick the wrong states.
    """
    head = fused_head(model) if positional else None
    if head is not None:
        hidden = head.decoder(**inputs, use_cache=False).last_hidden_state  # (B, T, H)
        trained_hidden = hidden[predicting_positions(labels)]  # (N, H)
        return fused_linear_nll_sum(trained_hidden, head.weight, trained_targets(labels), head.bias, head.softcap)
    if positional and accepts_logits_to_keep(model):
        logits = model(**inputs, use_cache=False, logits_to_keep=predicting_positions(labels)).logits
        return kept_nll_sum(logits, labels)[0]
    return token_nll_sum(model(**inputs, use_cache=False).logits, labels)[0]


def fused_head(model: torch.nn.Module) -> FusedHead | None:
    """The decoder and head to compute the loss with directly, or None where that is not safe."""
    if hasattr(model, "module") or hasattr(model, "unshard"):
        return None  # DDP/FSDP(2) synchronise or gather through their own forward; it must not be bypassed
    inner = unwrap_to_transformers(model)
    config = getattr(inner, "config", None)
    if config is None or config.model_type not in FUSED_FAMILIES:
        return None
    head = inner.get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        return None
    return FusedHead(inner.get_decoder(), head.weight, head.bias, getattr(config, "final_logit_softcapping", None))


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the causal LM under any wrappers takes `logits_to_keep` in its forward (transformers 5.x
    causal LMs do; remote-code models may not, and then the full logits are used)."""
    return "logits_to_keep" in inspect.signature(unwrap_to_transformers(model).forward).parameters
