"""Held-out loss during training: token-mean cross-entropy over every trained token of the eval set."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from tunesmith.train.batches import BatchPlan
from tunesmith.train.losses import token_nll_sum


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, plan: BatchPlan, accelerator: Accelerator) -> float:
    """Mean NLL per trained token (not a mean of batch means, which would overweight short batches)."""
    was_training = model.training
    model.eval()
    nll = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    count = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for step in range(plan.steps):
        for batch in plan.step_batches(step):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            labels = batch.pop("labels")
            logits = model(**batch, use_cache=False).logits
            nll_sum, n = token_nll_sum(logits, labels)
            nll += nll_sum.double()
            count += n
    nll, count = accelerator.reduce(nll, "sum"), accelerator.reduce(count, "sum")
    model.train(was_training)
    return float(nll / count.clamp(min=1))
