"""ORPO: SFT on the chosen answer plus an odds-ratio penalty (the paper's formula, as TRL computes it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def orpo_loss(chosen_mean: Tensor, rejected_mean: Tensor, chosen_nll: Tensor, *, beta: float) -> tuple[Tensor, Tensor]:
    """Per-pair ORPO losses nll - beta log sigma(log odds ratio), and the log odds ratios, each (B,).

    chosen_mean/rejected_mean: (B,) mean log-prob per answer token (ORPO's odds are of that mean);
    chosen_nll: (B,) mean NLL of the chosen answer, the SFT term. odds(p) = p / (1 - p), in log space.
    """
    chosen_mean, rejected_mean = chosen_mean.float(), rejected_mean.float()
    log_odds = (chosen_mean - rejected_mean) - (_log1mexp(chosen_mean) - _log1mexp(rejected_mean))
    return chosen_nll - beta * F.logsigmoid(log_odds), log_odds.detach()


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Maechler, 2012)."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))
