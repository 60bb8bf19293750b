"""The reward model's pairwise (Bradley-Terry) loss."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pairwise_reward_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Bradley-Terry loss -log sigma(r_chosen - r_rejected) per pair: (B,) from scores (B,), (B,)."""
    return -F.logsigmoid(chosen - rejected)
