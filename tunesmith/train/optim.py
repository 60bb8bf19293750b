"""Optimizer and learning-rate schedule, built the same way for every method."""

from __future__ import annotations

import torch
from transformers import get_scheduler


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; no decay on biases, norms and 1-d tensors (standard practice).

    The fused kernel is used on CUDA where it is faster; on CPU the foreach path is the fastest available.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        ndim = len(getattr(param, "ds_shape", param.shape))  # ZeRO-3 partitions hold the full shape aside
        (decay if ndim >= 2 and "norm" not in name.lower() else no_decay).append(param)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = torch.cuda.is_available() and all(p.is_cuda for p in decay + no_decay)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, total_steps: int, warmup_ratio: float):
    """Linear warmup over `warmup_ratio` of the steps, then linear/cosine decay or constant."""
    warmup = int(round(total_steps * warmup_ratio))
    name = "constant_with_warmup" if kind == "constant" else kind
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))
