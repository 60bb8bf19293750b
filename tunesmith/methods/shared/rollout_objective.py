"""The loop-facing half that GRPO and PPO share: prompts planned once, completions sampled per step.

Both sample completions from the policy, score them with the recipe's reward terms and train on the
rollout for `iterations` steps (RolloutSchedule); they differ in how a rollout becomes a batch
(`_rollout`) and in the loss (`loss_sum`). Units are completions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from accelerate import Accelerator

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.rollout_spec import RolloutSpec
from tunesmith.methods.shared.rewards import RewardTerm, check_answer_field, load_rewards
from tunesmith.methods.shared.rollout import RolloutSchedule, evaluate_rewards, plan_prompts, prompt_items
from tunesmith.recipe.spec import Recipe
from tunesmith.train.objective import Batch


class RolloutObjective:
    """Prompts, reward terms, the step plan and the rollout schedule of a sampling method."""

    spec: RolloutSpec
    eval_batch_size: int

    def _plan(self, recipe: Recipe, data: PreparedData, tokenizer: Any, spec: RolloutSpec,
              extra_terms: Sequence[RewardTerm] = ()) -> None:
        """Load the reward terms (checking every row has the answer field they read), tokenize the prompts
        of both splits, plan the steps and set up the rollout schedule."""
        self.spec, self.tokenizer = spec, tokenizer
        self.terms = load_rewards(spec.rewards, spec.reward_field)
        check_answer_field(self.terms, data.train_examples + data.eval_examples, spec.reward_field)
        self.terms += list(extra_terms)
        self.train_items = prompt_items(data.train_examples, tokenizer, recipe, spec)
        self.eval_items = prompt_items(data.eval_examples, tokenizer, recipe, spec)
        self.plan, self._steps = plan_prompts(recipe, spec, self.train_items)
        self.schedule = RolloutSchedule(self.plan, spec.iterations, self._rollout, self._finish_step)

    def _rollout(self, model: torch.nn.Module, items: list) -> Batch:
        raise NotImplementedError

    def _finish_step(self, batches: list[Batch]) -> None:
        """What needs all of one step's fresh rollouts at once (nothing unless a method says so)."""

    @property
    def steps(self) -> int:
        return self._steps

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return self.schedule.batches(step, model)

    def units(self, batch: Batch) -> int:
        return batch["input_ids"].shape[0]

    def real_tokens(self, step: int) -> int:
        return self.schedule.real_tokens()

    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        return evaluate_rewards(model, accelerator, self.tokenizer, self.eval_items, self.terms, self.spec,
                                self.eval_batch_size)
