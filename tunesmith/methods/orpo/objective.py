"""`method: orpo` in the shared loop: no reference model."""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.orpo import OrpoSpec
from tunesmith.methods.orpo.losses import orpo_loss
from tunesmith.methods.shared.logprobs import scored_tokens
from tunesmith.methods.shared.preference import PlannedObjective, pair_metrics, plan_pairs, sequence_logps
from tunesmith.methods.shared.reference import forward
from tunesmith.recipe.spec import Recipe
from tunesmith.train.objective import Batch


class Orpo(PlannedObjective):
    """`method: orpo`: NLL of the chosen answer minus beta log sigma(log odds ratio); no reference model.

    Rewards are beta x the mean answer log-prob, as TRL logs them. The NLL covers the answer tokens (the
    paper's L_SFT); TRL's experimental trainer also counts the prompt's.
    """

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        self.planned = plan_pairs(recipe, data, tokenizer)
        self.beta = (recipe.orpo or OrpoSpec()).beta

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits, _ = forward(model, batch)
        means = sequence_logps(logits, batch["labels"]) / scored_tokens(batch["labels"]).clamp(min=1)
        chosen, rejected = means.chunk(2)
        losses, log_odds = orpo_loss(chosen, rejected, -chosen, beta=self.beta)
        metrics = pair_metrics(self.beta * chosen.detach(), self.beta * rejected.detach())
        metrics.update(nll=float(-chosen.detach().sum()), log_odds=float(log_odds.sum()))
        return losses.sum(), metrics
