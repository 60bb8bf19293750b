"""`method: dpo` in the shared loop: pairs scored against the reference (or none: SimPO, reference-free)."""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.dpo import DpoSpec
from tunesmith.methods.dpo.losses import dpo_loss
from tunesmith.methods.shared.logprobs import scored_tokens
from tunesmith.methods.shared.preference import PlannedObjective, pair_metrics, plan_pairs, sequence_logps
from tunesmith.methods.shared.reference import Reference, forward
from tunesmith.recipe.spec import Recipe
from tunesmith.train.objective import Batch


class Dpo(PlannedObjective):
    """`method: dpo`: -log sigma(beta (log-ratio chosen - log-ratio rejected)) and its variants (losses.py).

    On a vision-language model each pair's two rows carry the prompt's pictures (vision/pairs.py), and the policy
    and the reference forwards both see them (`forward` passes the pixel inputs)."""

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        self.planned = plan_pairs(recipe, data, tokenizer, model)
        if self.planned.processor is not None:  # a vision-language model: the run saves its processor
            self.processor = self.planned.processor
        self.spec = recipe.dpo or DpoSpec()
        self.reference: Reference | None = None
        if not (self.spec.reference_free or self.spec.loss == "simpo"):
            self.reference = Reference(model, recipe.train.mixed_precision, keep_copy=not self.spec.precompute_ref)
            if self.spec.precompute_ref:
                self.planned.precompute(model, lambda batch: {"ref_logps": self._reference_logps(model, batch)})

    def _reference_logps(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        assert self.reference is not None
        logits, _ = forward(model, batch, reference=self.reference)
        return sequence_logps(logits, batch["labels"])

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits, _ = forward(model, batch)
        logps = sequence_logps(logits, batch["labels"])  # (2B,)
        if self.reference is not None:
            ref = batch["ref_logps"] if "ref_logps" in batch else self._reference_logps(model, batch)
            logps = logps - ref
        chosen, rejected = logps.chunk(2)
        chosen_tokens, rejected_tokens = scored_tokens(batch["labels"]).chunk(2)
        s = self.spec
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            chosen, rejected, chosen_tokens, rejected_tokens, loss=s.loss, beta=s.beta,
            label_smoothing=s.label_smoothing, simpo_gamma=s.simpo_gamma,
        )
        return losses.sum(), pair_metrics(chosen_rewards, rejected_rewards)
