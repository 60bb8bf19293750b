"""`method: ppo`: RLHF with PPO (Ouyang et al. 2022; Stiennon et al. 2020), in the shared loop.

Pieces, all on one model:
  policy      the model with its adapter; samples one completion per prompt
  value head  `Linear(hidden, 1)` on the policy's last hidden state (heads.attach_head), trained with it
  reference   the same model with the adapter disabled (shared/reference.py): the KL penalty's anchor
  reward      the trained reward model (`ppo.reward_model: RUN_DIR` of a `method: reward` run) and/or reward
              functions (`ppo.rewards`, e.g. for verifiable tasks), summed with their weights

Each rollout: sample, score, then per token reward r_t = -kl_coef (log pi_old - log pi_ref), plus the score
on the completion's last token; GAE (gamma, lam) over the completion gives advantages (whitened over the
micro-batch) and returns. Loss per completion: token mean of the clipped policy surrogate + vf_coef x the
clipped value loss; units are completions. A rollout serves `ppo.iterations` optimizer steps (PPO epochs).
Logged: reward (the score) and reward/<name>, kl (per completion, summed over tokens), policy_loss,
value_loss, clip_ratio, completion_length. Evaluation: greedy completions of the held-out prompts, scored.
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.ppo import PpoSpec
from tunesmith.methods.ppo.losses import clipped_value_loss, gae, whiten
from tunesmith.methods.reward.objective import RewardModel
from tunesmith.methods.shared.policy_losses import clipped_policy_loss, masked_row_mean
from tunesmith.methods.shared.reference import Reference, forward
from tunesmith.methods.shared.rewards import RewardTerm, score, total
from tunesmith.methods.shared.rollout import completion_logps, completion_positions, reward_metrics, sample
from tunesmith.methods.shared.rollout_objective import RolloutObjective
from tunesmith.models.heads import VALUE_HEAD, attach_head, head_scores
from tunesmith.recipe.spec import Recipe
from tunesmith.train.objective import Batch


class Ppo(RolloutObjective):
    """The objective of `method: ppo` (see the module docstring); units are completions."""

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        assert recipe.ppo is not None  # the recipe requires the block for method: ppo
        self.spec: PpoSpec = recipe.ppo
        self.eval_batch_size = recipe.train.batch_size
        scorer = recipe.ppo.reward_model
        self._plan(recipe, data, tokenizer, recipe.ppo,
                   [RewardTerm("reward_model", 1.0, RewardModel.load(scorer).score)] if scorer is not None else [])
        self.value_head = attach_head(model, VALUE_HEAD)
        self.reference = Reference(model, recipe.train.mixed_precision) if recipe.ppo.kl_coef > 0 else None

    @torch.no_grad()
    def _rollout(self, model: torch.nn.Module, items: list) -> Batch:
        s = self.spec
        batch, texts = sample(model, self.tokenizer, [ids for _, ids in items], repeats=1,
                              max_new_tokens=s.max_new_tokens, temperature=s.temperature)
        scores = score(self.terms, [row for row, _ in items], texts)  # (N, F)
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items()}
        was_training = model.training
        model.eval()  # the sampling policy: no dropout
        logits, states = forward(model, inputs, hidden=True)
        model.train(was_training)
        old_logps = completion_logps(logits, inputs, s.temperature)
        values = head_scores(self.value_head, completion_positions(states, inputs)).float()
        mask = inputs["completion_mask"].float()
        kl = torch.zeros_like(old_logps)
        if self.reference is not None:
            ref_logits, _ = forward(model, inputs, reference=self.reference)
            kl = (old_logps - completion_logps(ref_logits, inputs, s.temperature)) * mask
        rewards = -s.kl_coef * kl
        last = mask.sum(-1).long() - 1  # (N,) index of each completion's last token
        rewards[torch.arange(len(last)), last] += total(self.terms, scores).to(device)
        advantages, returns = gae(rewards, values * mask, mask, s.gamma, s.lam)
        batch.update(scores=scores, old_logps=old_logps.cpu(), old_values=values.cpu(),
                     advantages=whiten(advantages, mask).cpu(),
                     returns=returns.cpu(), kl=kl.sum(-1).cpu())
        return batch

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        s, mask = self.spec, batch["completion_mask"]
        logits, states = forward(model, batch, hidden=True)
        logps = completion_logps(logits, batch, s.temperature)  # (N, C)
        values = head_scores(self.value_head, completion_positions(states, batch)).float()
        policy, clipped = clipped_policy_loss(logps, batch["old_logps"], batch["advantages"], s.clip_eps)
        value = clipped_value_loss(values, batch["old_values"], batch["returns"], s.value_clip)
        policy_loss, value_loss = masked_row_mean(policy, mask), masked_row_mean(value, mask)
        metrics = reward_metrics(self.terms, batch["scores"].cpu())
        metrics.update(
            kl=float(batch["kl"].sum()), policy_loss=float(policy_loss.detach().sum()),
            value_loss=float(value_loss.detach().sum()), clip_ratio=float(masked_row_mean(clipped, mask).sum()),
            completion_length=float(mask.sum()),
        )
        return (policy_loss + s.vf_coef * value_loss).sum(), metrics
