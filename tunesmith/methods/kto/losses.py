"""KTO's loss and its batch KL baseline, as TRL 1.16 computes them. Conventions: methods/shared/logprobs.py."""

from __future__ import annotations

import torch
from torch import Tensor


def kto_kl(kl_logps: Tensor, ref_kl_logps: Tensor) -> Tensor:
    """The KTO reference point: mean log-ratio of mismatched (prompt, answer) pairs, >= 0, no gradient: ().

    kl_logps, ref_kl_logps: (B,) policy and reference log-probs of answer i-1 given prompt i.
    """
    return (kl_logps - ref_kl_logps).mean().clamp(min=0).detach()


def kto_loss(
    logratios: Tensor,
    desirable: Tensor,
    kl: Tensor,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Per-example losses and implicit rewards beta*logratio, each (B,).

    logratios: (B,); desirable: (B,) bool; kl: () from `kto_kl`. Desirable: w_d (1 - sigma(beta (r - kl)));
    undesirable: w_u (1 - sigma(beta (kl - r))) (KTO paper, eq. 7).
    """
    good = desirable_weight * (1 - torch.sigmoid(beta * (logratios - kl)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (kl - logratios)))
    return torch.where(desirable, good, bad), beta * logratios.detach()
