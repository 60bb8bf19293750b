"""What GRPO and PPO share: the clipped policy surrogate, the k3 KL estimate, masked means.
Pure tensor functions; shapes in the comments."""

from __future__ import annotations

import torch
from torch import Tensor


def clipped_policy_loss(logps: Tensor, old_logps: Tensor, advantages: Tensor, clip_eps: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate per token, and where the clip was active, each (N, C).

    logps, old_logps: (N, C) per-token log-probs of the sampled tokens now and at sampling time;
    advantages: (N,) one per completion (GRPO) or (N, C) per token (PPO).
    """
    return clipped_surrogate(torch.exp(logps - old_logps), advantages, clip_eps, clip_eps)


def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float) -> tuple[Tensor, Tensor]:
    """-min(ratio x A, clip(ratio, 1 - clip_low, 1 + clip_high) x A), and where the clip was active.

    ratio: (N, C) per token or (N, 1) per completion; advantages: (N,) or (N, C); the results broadcast to
    the larger of the two. A clip_high above clip_low is DAPO's clip-higher.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    loss = -torch.min(ratio * advantages, clipped * advantages)
    return loss, (ratio * advantages > clipped * advantages).float()


def k3_kl(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """Per-token KL estimate exp(ref - p) - (ref - p) - 1 >= 0 (Schulman's k3, as GRPO uses): (N, C)."""
    diff = ref_logps - logps
    return torch.exp(diff) - diff - 1


def masked_row_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each row's masked-in positions: (N,) from (N, C), (N, C)."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
