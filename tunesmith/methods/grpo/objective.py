"""`method: grpo`: group relative policy optimisation with reward functions (DeepSeekMath; TRL's GRPO).

Each optimizer step samples `group_size` completions for each of its prompts (batch_size prompts per
micro-batch), scores them with the recipe's reward functions, and turns each reward into an advantage
relative to its own group: (r - group mean) / (group std + 1e-4) (`scale_rewards` picks the std: the
group's, the step's, or none). The per-token loss is PPO's clipped surrogate (ratio per token, or per
completion with `importance_sampling_level: sequence`; upper clip `epsilon_high`), plus beta x the k3 KL to
the reference when beta > 0 (weighted by the importance ratio, as TRL does); `loss_type` says how token losses
add up (losses.LOSS_TYPES). Units are completions: with `dynamic_sampling`, those of the groups kept.
`mask_truncated_completions` takes completions without an eos out of the loss (they still count as units
and in their group's advantages, as in TRL).
A batch of rollouts serves `grpo.iterations` optimizer steps; from the second on, the ratio to the
sampling-time log-probs moves away from 1 and the clip matters. (A run resumed between those steps samples
its rollouts anew.) A step whose groups dynamic sampling all drops trains on nothing, yet the optimizer
still steps (Adam's momentum moves the weights); DAPO samples more prompts instead, which this does not.

Logged per step: reward (total) and reward/<name> with their std, completion_length (all over every sampled
completion), kl (when beta > 0), clip_ratio, dropped_groups (with dynamic sampling). Evaluation samples
greedily on the held-out prompts and reports eval_reward (eval_loss is -eval_reward).
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.grpo import GrpoSpec
from tunesmith.methods.grpo.losses import (
    LOSS_TYPES,
    StepCounts,
    flat_groups,
    group_advantages,
    grpo_token_loss,
    truncated,
)
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
        batch["scores"] = score(self.terms, rows, texts)  # (N, F)
        completion_ids = batch["input_ids"][:, -batch["completion_mask"].shape[1]:]
        batch["truncated"] = truncated(completion_ids, self.tokenizer.eos_token_id)  # (N,)
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

    def _finish_step(self, batches: list[Batch]) -> None:
        """Advantages over the step's rewards (a "batch" scale needs them all), the groups dynamic sampling
        keeps, each completion's loss mask, and the step's counts the loss types and metrics divide by."""
        s = self.spec
        rewards = torch.cat([total(self.terms, b["scores"]) for b in batches])  # (S,) over the step
        advantages = group_advantages(rewards, s.group_size, s.scale_rewards)
        kept = torch.ones_like(rewards)
        if s.dynamic_sampling:
            kept = (~flat_groups(rewards, s.group_size)).float().repeat_interleave(s.group_size)
        start = 0
        for b in batches:
            rows = slice(start, start + b["scores"].shape[0])
            start = rows.stop
            keep = kept[rows] * (1 - b["truncated"].float()) if s.mask_truncated_completions else kept[rows]
            b.update(advantages=advantages[rows], kept=kept[rows], loss_mask=b["completion_mask"] * keep.unsqueeze(1),
                     dropped_groups=torch.tensor(float((kept[rows] == 0).sum()) / s.group_size))
        step = torch.tensor([float(rewards.numel()), float(kept.sum()), sum(float(b["loss_mask"].sum()) for b in batches)])
        for b in batches:
            b["step_counts"] = step  # sampled completions, kept completions, their loss tokens

    def units(self, batch: Batch) -> int:
        return int(batch["kept"].sum())

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        s, mask = self.spec, batch["loss_mask"]
        logits, _ = forward(model, batch)
        logps = completion_logps(logits, batch, s.temperature)  # (N, C)
        old = batch["old_logps"] if "old_logps" in batch else logps.detach()
        per_token, clipped, kl = grpo_token_loss(
            logps, old, batch.get("ref_logps"), batch["advantages"], mask, clip_low=s.clip_eps, clip_high=s.clip_high,
            beta=s.beta, sequence_level=s.importance_sampling_level == "sequence")
        sampled, kept, tokens = (float(x) for x in batch["step_counts"])
        counts = StepCounts(units=float(batch["kept"].sum()), step_units=kept, step_tokens=tokens,
                            max_new_tokens=s.max_new_tokens)
        # Metrics of every sampled completion: the loop divides by the kept ones, so scale them to a mean over all.
        scale = max(kept, 1.0) / sampled
        metrics = {k: v * scale for k, v in reward_metrics(self.terms, batch["scores"].cpu()).items()}
        metrics.update(completion_length=float(batch["completion_mask"].sum()) * scale,
                       clip_ratio=float(masked_row_mean(clipped.expand_as(mask), mask).sum()))
        if s.dynamic_sampling:
            metrics["dropped_groups"] = float(batch["dropped_groups"]) * max(kept, 1.0)
        if kl is not None:
            metrics["kl"] = float(masked_row_mean(kl.detach(), mask).sum())
        return LOSS_TYPES[s.loss_type](per_token, mask, counts), metrics
