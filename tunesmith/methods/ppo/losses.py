"""PPO (RLHF): generalised advantage estimation, whitening and the clipped value loss."""

from __future__ import annotations

import torch
from torch import Tensor


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over completion tokens: advantages and returns, each (N, C).

    rewards, values: (N, C); mask: (N, C), 1 on the completion's tokens (a prefix of each row). The value
    after a completion's last token is 0: the episode ends there.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t] * mask[:, t]
    return advantages, (advantages + values) * mask


def whiten(values: Tensor, mask: Tensor) -> Tensor:
    """Shift and scale the masked-in entries to mean 0, std 1 (PPO's advantage normalisation): same shape."""
    n = mask.sum().clamp(min=2)
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / (n - 1)
    return (values - mean) * torch.rsqrt(var + 1e-8) * mask


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float) -> Tensor:
    """PPO's value loss 0.5 max((v - R)^2, (clip(v, v_old +- clip) - R)^2) per token: (N, C)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2)
