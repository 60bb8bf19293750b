"""GRPO's pure tensor functions: advantages within groups, the per-token loss and the loss types that turn
token losses into a step's loss, each pinned to TRL 1.16's GRPOTrainer (tests/test_grpo_losses.py).

The loop divides a micro-batch's loss sum by the optimizer step's units (completions; with dynamic sampling,
the completions of the groups it keeps), so each loss type returns what makes that quotient TRL's loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tunesmith.methods.shared.policy_losses import clipped_surrogate, k3_kl, masked_row_mean


def group_advantages(rewards: Tensor, group_size: int, scale: str = "group") -> Tensor:
    """GRPO advantages: reward minus its group's mean, over a std (+1e-4): (N,) from (N,).

    Completions of one prompt are consecutive, `group_size` of them. `scale` (TRL's scale_rewards): "group"
    divides by the group's std, "batch" by the std over all N (PPO Lite), "none" not at all (Dr. GRPO: the
    std favours questions that are too easy or too hard). The std is the unbiased one, as TRL's.
    """
    groups = rewards.view(-1, group_size)  # (N/G, G)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale == "none":
        return centred.view(-1)
    std = groups.std(dim=1, keepdim=True) if scale == "group" else rewards.std()
    return (centred / (std + 1e-4)).view(-1)


def flat_groups(rewards: Tensor, group_size: int) -> Tensor:
    """True for each group whose rewards are all equal (std 0, as TRL counts frac_reward_zero_std): (N/G,).

    Such a group's advantages are all 0, so it carries no policy gradient; DAPO's dynamic sampling drops it.
    """
    std = rewards.view(-1, group_size).std(dim=1)
    return torch.isclose(std, torch.zeros_like(std))


def truncated(completion_ids: Tensor, eos: int) -> Tensor:
    """True for each completion that max_new_tokens cut off, i.e. that holds no eos: (N,) from (N, C)."""
    return ~(completion_ids == eos).any(dim=-1)


def grpo_token_loss(
    logps: Tensor, old_logps: Tensor, ref_logps: Tensor | None, advantages: Tensor, mask: Tensor, *,
    clip_low: float, clip_high: float, beta: float, sequence_level: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """GRPO's per-token loss, where its clip was active, and its KL term (None without a reference).

    logps, old_logps, ref_logps, mask: (N, C); advantages: (N,). The ratio pi/pi_old is one per token, or with
    `sequence_level` (GSPO) one per completion, exp of its mean log-ratio over the mask: the loss and the clip
    are then (N, 1). The clipped surrogate plus beta x k3 KL, the KL weighted by that ratio: TRL 1.16's default
    bias correction for rollouts reused over several steps (the ratio is 1 on their first step).
    """
    log_ratio = logps - old_logps  # (N, C)
    if sequence_level:
        log_ratio = masked_row_mean(log_ratio, mask).unsqueeze(1)  # (N, 1)
    ratio = torch.exp(log_ratio)
    loss, clipped = clipped_surrogate(ratio, advantages, clip_low, clip_high)
    if ref_logps is None:
        return loss, clipped, None
    kl = k3_kl(logps, ref_logps) * ratio  # (N, C)
    return loss + beta * kl, clipped, kl


@dataclass(frozen=True)
class StepCounts:
    """What a loss type may normalise by beyond its own micro-batch."""

    units: float
    """Completions this micro-batch trains on (the loop's units for it)."""
    step_units: float
    """Completions the whole optimizer step trains on, on all ranks (the loop's divisor)."""
    step_tokens: float
    """Loss tokens of those completions."""
    max_new_tokens: int


def _grpo(per_token: Tensor, mask: Tensor, counts: StepCounts) -> Tensor:
    """DeepSeekMath: each completion's token mean, then the mean over completions."""
    return masked_row_mean(per_token, mask).sum()


def _bnpo(per_token: Tensor, mask: Tensor, counts: StepCounts) -> Tensor:
    """The token mean over the micro-batch (TRL's "local batch"), micro-batches weighted by their completions."""
    return counts.units * (per_token * mask).sum() / mask.sum().clamp(min=1)


def _dr_grpo(per_token: Tensor, mask: Tensor, counts: StepCounts) -> Tensor:
    """Dr. GRPO: the token sum over completions x max_new_tokens, a constant, so no length bias."""
    return (per_token * mask).sum() / counts.max_new_tokens


def _dapo(per_token: Tensor, mask: Tensor, counts: StepCounts) -> Tensor:
    """DAPO: the token mean over the whole optimizer step (TRL's num_items_in_batch), every token alike."""
    return (per_token * mask).sum() * counts.step_units / max(counts.step_tokens, 1.0)


LOSS_TYPES: dict[str, Callable[[Tensor, Tensor, StepCounts], Tensor]] = {
    "grpo": _grpo, "bnpo": _bnpo, "dr_grpo": _dr_grpo, "dapo": _dapo,
}
"""TRL's loss_type -> the micro-batch's loss sum from per-token losses (N, C) or (N, 1) and the mask (N, C)."""
