"""Predicted time per epoch: model FLOPs per token over the device's achievable FLOP/s.

FLOPs per trained token (dense decoder, N non-embedding parameters): forward 2N; backward 2N for the
activation gradients plus 2N for weight gradients where weights train (full), ~0 for a frozen base;
checkpointing recomputes the forward (+2N); DPO/KTO/PPO add a reference forward (2N). Attention's
sequence-length term is added per token: 4 x layers x hidden x seq_len / 2 forward (causal), tripled with
backward. The achievable FLOP/s is the device's (plan/hardware.py).
"""

from __future__ import annotations

from tunesmith.plan.memory import TrainSetup


def flops_per_token(s: TrainSetup) -> float:
    shape = s.shape
    n = shape.params - shape.embed_params
    attention = 2 * shape.layers * shape.hidden * s.seq_len  # causal: half of 4 x L x h x T
    forward = 2 * n + attention
    backward = 2 * n + 2 * attention + (2 * n if s.adapter == "full" else 0)
    recompute = forward if s.checkpointing else 0
    reference = forward if s.method in ("dpo", "kto", "ppo") else 0
    return forward + backward + recompute + reference


def seconds_per_epoch(s: TrainSetup, tokens: int, flops_per_second: float) -> float | None:
    """Seconds for one pass over `tokens` training tokens on `s.nproc` devices; None when speed is unknown."""
    if flops_per_second <= 0 or tokens <= 0:
        return None
    return tokens * flops_per_token(s) / (flops_per_second * s.nproc)
