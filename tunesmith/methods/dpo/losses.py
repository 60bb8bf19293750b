"""DPO-family losses (sigmoid DPO, IPO, hinge/SLiC, SimPO): pure tensor functions, as TRL 1.16
computes them (tests/test_pref_losses.py pins them to its numbers). Conventions: methods/shared/logprobs.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

DPO_LOSSES = ("sigmoid", "ipo", "hinge", "simpo")


def dpo_loss(
    chosen: Tensor,
    rejected: Tensor,
    chosen_tokens: Tensor,
    rejected_tokens: Tensor,
    *,
    loss: str,
    beta: float,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair losses and the implicit rewards of the chosen and rejected answers, each (B,).

    chosen/rejected: (B,) log-ratios to the reference (for `simpo`: the policy's summed log-probs, it has no
    reference); *_tokens: (B,) answer lengths. sigmoid: -log sigma(beta*delta), with label smoothing
    eps: -(1-eps) log sigma(beta*delta) - eps log sigma(-beta*delta) (cDPO). hinge: relu(1 - beta*delta).
    ipo: (delta/len - 1/(2 beta))^2 on per-token log-ratios, as TRL does. simpo: -log sigma(beta*delta/len - gamma).
    Rewards are beta x the log-ratios (TRL's DPO), for simpo beta x the mean log-prob (TRL's CPO).
    """
    per_token = loss in ("ipo", "simpo")
    c = chosen / chosen_tokens.clamp(min=1) if per_token else chosen
    r = rejected / rejected_tokens.clamp(min=1) if per_token else rejected
    delta = c - r  # (B,)
    if loss == "sigmoid":
        losses = _smoothed(beta * delta, label_smoothing)
    elif loss == "simpo":
        losses = _smoothed(beta * delta - simpo_gamma, label_smoothing)
    elif loss == "hinge":
        losses = torch.relu(1 - beta * delta)
    elif loss == "ipo":
        losses = (delta - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown DPO loss '{loss}'; use one of {', '.join(DPO_LOSSES)}")
    if loss != "simpo":
        c, r = chosen, rejected
    return losses, beta * c.detach(), beta * r.detach()


def _smoothed(logits: Tensor, eps: float) -> Tensor:
    return -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
