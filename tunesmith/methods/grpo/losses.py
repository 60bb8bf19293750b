"""GRPO: advantages relative to each prompt's group, and the per-token loss (TRL's `grpo` loss)."""

from __future__ import annotations

import torch
from torch import Tensor

from tunesmith.methods.shared.policy_losses import clipped_policy_loss, k3_kl


def group_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """GRPO advantages: reward minus its group's mean, over the group's std (+1e-4): (N,) from (N,).

    Completions of one prompt are consecutive, `group_size` of them. The std is the unbiased one, as TRL's.
    """
    groups = rewards.view(-1, group_size)  # (N/G, G)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)
    return ((groups - mean) / (std + 1e-4)).view(-1)


def grpo_token_loss(
    logps: Tensor, old_logps: Tensor, ref_logps: Tensor | None, advantages: Tensor, *, clip_eps: float, beta: float,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """GRPO's per-token loss, where its clip was active, and its KL term (None without a reference), each (N, C).

    The clipped surrogate plus beta x k3 KL; the KL is weighted by the importance ratio pi/pi_old, TRL 1.16's
    default bias correction for rollouts reused over several steps (the ratio is 1 on their first step).
    """
    loss, clipped = clipped_policy_loss(logps, old_logps, advantages, clip_eps)
    if ref_logps is None:
        return loss, clipped, None
    kl = k3_kl(logps, ref_logps) * torch.exp(logps - old_logps)
    return loss + beta * kl, clipped, kl
