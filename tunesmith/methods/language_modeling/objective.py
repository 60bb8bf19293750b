"""SFT and continued pre-training: next-token cross-entropy on the trained tokens (responses, or all text)."""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate import Accelerator

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.language_modeling.loss_route import trained_nll_sum
from tunesmith.methods.shared.token_nll import count_trained_tokens
from tunesmith.recipe.spec import Recipe
from tunesmith.speedups.kernels import needs_flat_batches
from tunesmith.train.batches import BatchPlan, plan_batches
from tunesmith.train.objective import Batch


class LanguageModeling:
    """The objective of `method: sft` and `method: cpt`: token-mean NLL, normalised over the whole step."""

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        """Under flash attention, packed micro-batches are one flat row each (data/packing.py says why)."""
        t, pad_id, flat = recipe.train, tokenizer.pad_token_id, needs_flat_batches(model)
        self.slice_logits = not recipe.adapter_kind.prompt_learning  # virtual tokens shift positions: full logits
        self.plan = plan_batches(
            data.train, batch_size=t.batch_size, accum=t.grad_accum, epochs=t.epochs, max_steps=t.max_steps,
            max_seq_len=t.max_seq_len, packing=t.packing, pad_id=pad_id, seed=t.seed, shuffle=t.shuffle, flat=flat,
        )
        self.eval_plan: BatchPlan | None = None
        if data.eval:
            self.eval_plan = plan_batches(
                data.eval, batch_size=t.batch_size, accum=1, epochs=1, max_steps=None, max_seq_len=t.max_seq_len,
                packing=t.packing, pad_id=pad_id, seed=0, flat=flat,
            )

    @property
    def steps(self) -> int:
        return self.plan.steps

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return self.plan.step_batches(step)

    def units(self, batch: Batch) -> int:
        return count_trained_tokens(batch["labels"])

    def real_tokens(self, step: int) -> int:
        return self.plan.real_tokens(step)

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Summed NLL of the trained tokens, by the cheapest route the model allows (see loss_route.py)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return trained_nll_sum(model, inputs, batch["labels"], positional=self.slice_logits), {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        """Mean NLL per trained token over the eval set (not a mean of batch means)."""
        if self.eval_plan is None:
            return {}
        was_training = model.training
        model.eval()
        nll = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        count = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        for step in range(self.eval_plan.steps):
            for batch in self.eval_plan.step_batches(step):
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                nll_sum, _ = self.loss_sum(model, batch)
                nll += nll_sum.double()
                count += self.units(batch)
        nll, count = accelerator.reduce(nll, "sum"), accelerator.reduce(count, "sum")
        model.train(was_training)
        loss = float(nll / count.clamp(min=1))
        return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}
