"""Per-token log-probabilities of labelled tokens, shared by the preference and RL methods.

Conventions (shared by every method's losses.py): `labels` aligned with `input_ids` (not shifted),
IGNORE_INDEX where a token is not scored. A *log-ratio* is log pi(y|x) - log pi_ref(y|x) summed over the
answer's tokens. Per-example losses come back unreduced, (B,): the objective sums them and the loop
divides by the step's examples, which keeps gradient accumulation exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tunesmith.data.types import IGNORE_INDEX


def token_logps(logits: Tensor, labels: Tensor) -> Tensor:
    """log p(label_t | tokens < t) at every scored position, 0 elsewhere: (B, T-1).

    logits: (B, T, V) any float dtype; labels: (B, T). Computed in fp32 as gather - logsumexp, which never
    holds a second (B, T, V) tensor of log-probabilities.
    """
    targets = labels[:, 1:]  # (B, T-1)
    mask = targets != IGNORE_INDEX
    shifted = logits[:, :-1].float()  # (B, T-1, V)
    picked = shifted.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (picked - torch.logsumexp(shifted, dim=-1)) * mask


def scored_tokens(labels: Tensor) -> Tensor:
    """Number of scored tokens per sequence: (B,) float."""
    return (labels[:, 1:] != IGNORE_INDEX).sum(-1).float()
