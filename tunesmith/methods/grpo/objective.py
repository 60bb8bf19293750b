"""`method: grpo`: group relative policy optimisation with reward functions (DeepSeekMath; TRL's `grpo` loss).

Each optimizer step samples `group_size` completions for each of its prompts (batch_size prompts per
micro-batch), scores them with the recipe's reward functions, and turns each reward into an advantage
relative to its own group: (r - group mean) / (group std + 1e-4). The loss per completion is the token mean
of PPO's clipped surrogate, plus beta x the k3 KL to the reference when beta > 0 (weighted by the
importance ratio, as TRL does); units are completions.
A batch of rollouts serves `grpo.iterations` optimizer steps; from the second on, the ratio to the
sampling-time log-probs moves away from 1 and the clip matters. (A run resumed between those steps samples
its rollouts anew.)

Logged per step: reward (total) and reward/<name> with their std, completion_length, kl (when beta > 0),
clip_ratio. Evaluation samples greedily on the held-out prompts and reports eval_reward (eval_loss is
-eval_reward).
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.grpo import GrpoSpec
from tunesmith.methods.grpo.losses import group_advantages, grpo_token_loss
from tunesmith.methods.shared.policy_losses import masked_row_mean
from tunesmith.methods.shared.reference import Reference, forward
from tunesmith.methods.shared.rewards import score, total
from tunesmith.methods.shared.rollout import completion_logps, reward_metrics, sample
from tunesmith.methods.shared.rollout_objective import RolloutObjective
from tunesmith.recipe.spec import Recipe
from tunesmith.train.objective import Batch


class Grpo(RolloutObjective):
    """The objective of `method: grpo` (see the module docstring); units are completions."""

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        assert recipe.grpo is not None  # the recipe requires the block for method: grpo
        self.spec: GrpoSpec = recipe.grpo
        self.eval_batch_size = recipe.train.batch_size * recipe.grpo.group_size
        self.reference = Reference(model, recipe.train.mixed_precision) if recipe.grpo.beta > 0 else None
        self._plan(recipe, data, tokenizer, recipe.grpo)

    def _rollout(self, model: torch.nn.Module, items: list) -> Batch:
        s = self.spec
        batch, texts = sample(model, self.tokenizer, [ids for _, ids in items], repeats=s.group_size,
                              max_new_tokens=s.max_new_tokens, temperature=s.temperature)
        rows = [row for row, _ in items for _ in range(s.group_size)]
        scores = score(self.terms, rows, texts)  # (N, F)
        batch.update(scores=scores, advantages=group_advantages(total(self.terms, scores), s.group_size))
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items()}
        with torch.no_grad():
            if s.iterations > 1:  # later steps on these rollouts need the sampling policy's log-probs
                was_training = model.training
                model.eval()
                batch["old_logps"] = completion_logps(forward(model, inputs)[0], inputs, s.temperature).cpu()
                model.train(was_training)
            if self.reference is not None:
                logits, _ = forward(model, inputs, reference=self.reference)
                batch["ref_logps"] = completion_logps(logits, inputs, s.temperature).cpu()
        return batch

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        s, mask = self.spec, batch["completion_mask"]
        logits, _ = forward(model, batch)
        logps = completion_logps(logits, batch, s.temperature)  # (N, C)
        old = batch["old_logps"] if "old_logps" in batch else logps.detach()
        per_token, clipped, kl = grpo_token_loss(logps, old, batch.get("ref_logps"), batch["advantages"],
                                                 clip_eps=s.clip_eps, beta=s.beta)
        metrics = reward_metrics(self.terms, batch["scores"].cpu())
        metrics.update(completion_length=float(mask.sum()), clip_ratio=float(masked_row_mean(clipped, mask).sum()))
        if kl is not None:
            metrics["kl"] = float(masked_row_mean(kl.detach(), mask).sum())
        return masked_row_mean(per_token, mask).sum(), metrics
