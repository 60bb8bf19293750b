"""Pure loss functions of the alignment methods: preference (DPO family, KTO, ORPO, reward model) and
policy-gradient (GRPO, PPO). Tensors in, tensors out; shapes in the comments; no model calls.

Conventions. `labels` are aligned with `input_ids` (not shifted), IGNORE_INDEX where a token is not scored,
as in losses.py. A *log-ratio* is log pi(y|x) - log pi_ref(y|x) summed over the answer's tokens. Every
per-example loss is returned unreduced, (B,): the objective sums it and the loop divides by the step's
examples, which keeps gradient accumulation exact. Formulas follow TRL 1.16 where TRL has the method
(the parity tests pin them to its numbers) and the papers elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tunesmith.data.types import IGNORE_INDEX

# ---- log-probabilities ---------------------------------------------------------------------------


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


# ---- DPO family ----------------------------------------------------------------------------------

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


# ---- KTO ------------------------------------------------------------------------------------------


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


# ---- ORPO -----------------------------------------------------------------------------------------


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


# ---- reward model ---------------------------------------------------------------------------------


def pairwise_reward_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Bradley-Terry loss -log sigma(r_chosen - r_rejected) per pair: (B,) from scores (B,), (B,)."""
    return -F.logsigmoid(chosen - rejected)


# ---- policy gradient (GRPO, PPO) -------------------------------------------------------------------


def group_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """GRPO advantages: reward minus its group's mean, over the group's std (+1e-4): (N,) from (N,).

    Completions of one prompt are consecutive, `group_size` of them. The std is the unbiased one, as TRL's.
    """
    groups = rewards.view(-1, group_size)  # (N/G, G)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)
    return ((groups - mean) / (std + 1e-4)).view(-1)


def clipped_policy_loss(logps: Tensor, old_logps: Tensor, advantages: Tensor, clip_eps: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate per token, and where the clip was active, each (N, C).

    logps, old_logps: (N, C) per-token log-probs of the sampled tokens now and at sampling time;
    advantages: (N,) one per completion (GRPO) or (N, C) per token (PPO).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    loss = -torch.min(ratio * advantages, clipped * advantages)
    return loss, (ratio * advantages > clipped * advantages).float()


def k3_kl(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """Per-token KL estimate exp(ref - p) - (ref - p) - 1 >= 0 (Schulman's k3, as GRPO uses): (N, C)."""
    diff = ref_logps - logps
    return torch.exp(diff) - diff - 1


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


def masked_row_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each row's masked-in positions: (N,) from (N, C), (N, C)."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


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
