"""Sampling completions from the policy, and what GRPO and PPO do with them alike.

A rollout batch lays each sequence out as [left-padded prompt | completion, right-padded], the layout
`generate` produces and TRL's GRPO scores: `input_ids`, `attention_mask` and `position_ids` (counting real
tokens only, as `generate` does, so learned-position models see the positions they sampled with) for the
forward, `labels` on the completion tokens, and `completion_mask` (N, C): a completion runs up to and
including its first eos, which is scored too, so the policy learns when to stop.

Sampling is pure temperature sampling (no top-k/top-p), so the sampled tokens follow the distribution
whose log-probs the loss uses: the policy's logits divided by the same temperature.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate import Accelerator
from transformers import GenerationConfig

from tunesmith.data.pairs import tokenize_prompts
from tunesmith.data.types import IGNORE_INDEX, Example, Prompt
from tunesmith.errors import UserError
from tunesmith.methods.rollout_spec import RolloutSpec
from tunesmith.methods.shared.logprobs import token_logps
from tunesmith.methods.shared.preference import per_batch
from tunesmith.methods.shared.reference import unwrap_ddp
from tunesmith.methods.shared.rewards import RewardTerm, score, total
from tunesmith.models.padding import left_pad, token_positions
from tunesmith.recipe.spec import Recipe
from tunesmith.train.batches import BatchPlan, plan_batches
from tunesmith.train.objective import Batch


@torch.no_grad()
def sample(
    model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], *, repeats: int, max_new_tokens: int,
    temperature: float,
) -> tuple[Batch, list[str]]:
    """`repeats` completions of each prompt (consecutive), as a rollout batch, and their texts.

    temperature 0 samples greedily (evaluation). The model is in eval mode while it samples.
    """
    rows = [ids for ids in prompts for _ in range(repeats)]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    prompt_ids, prompt_mask = left_pad(rows, pad)
    width = prompt_ids.shape[1]
    policy = unwrap_ddp(model)
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    # A config of our own: a model's generation_config.json (repetition penalty, top-k...) would change the
    # distribution the completions are drawn from, and the log-probs would no longer be theirs.
    config = GenerationConfig(max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos, **sampling)
    generated = policy.generate(input_ids=prompt_ids.to(device), attention_mask=prompt_mask.to(device),
                                generation_config=config).cpu()
    policy.train(was_training)
    completion_ids = generated[:, width:]
    completion_mask = until_eos(completion_ids, eos)
    texts = tokenizer.batch_decode(completion_ids * completion_mask + pad * (1 - completion_mask), skip_special_tokens=True)
    return rollout_batch(prompt_ids, prompt_mask, completion_ids, completion_mask), texts


def until_eos(completion_ids: torch.Tensor, eos: int) -> torch.Tensor:
    """1 up to and including each row's first eos, 0 after it: (N, C) from (N, C)."""
    is_eos = completion_ids == eos
    return ((is_eos.cumsum(-1) - is_eos.long()) == 0).long()  # no eos before this position


def rollout_batch(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                  completion_mask: torch.Tensor) -> Batch:
    """The forward inputs of [prompt | completion] sequences: (N, P) and (N, C) -> (N, P + C)."""
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    labels = input_ids.masked_fill(torch.cat([torch.zeros_like(prompt_mask), completion_mask], dim=1) == 0, IGNORE_INDEX)
    return {
        "input_ids": input_ids, "attention_mask": attention_mask,
        "position_ids": token_positions(attention_mask), "labels": labels,
        "completion_mask": completion_mask,
    }


def completion_logps(logits: torch.Tensor, batch: Batch, temperature: float) -> torch.Tensor:
    """Per-token log-probs of the completion tokens at the sampling temperature: (N, C), 0 past each end."""
    width = batch["completion_mask"].shape[1]
    return token_logps(logits / temperature, batch["labels"])[:, -width:]


def completion_positions(states: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The entries of (N, P + C, ...) states at the positions that predict each completion token: (N, C, ...)."""
    width = batch["completion_mask"].shape[1]
    return states[:, -width - 1:-1]


def prompt_items(rows: list[Example], tokenizer: Any, recipe: Recipe, spec: RolloutSpec) -> list[tuple[Prompt, list[int]]]:
    """(row, prompt ids) pairs; a prompt is cut (from its start) to leave room for `max_new_tokens`."""
    room = recipe.train.max_seq_len - spec.max_new_tokens
    if room < 8:
        raise UserError(f"train.max_seq_len ({recipe.train.max_seq_len}) leaves no room for prompts after "
                        f"max_new_tokens ({spec.max_new_tokens}); raise train.max_seq_len or lower max_new_tokens")
    return list(zip(rows, tokenize_prompts(rows, tokenizer, room)))  # type: ignore[arg-type]


def plan_prompts(recipe: Recipe, spec: RolloutSpec, items: list[tuple[Prompt, list[int]]]) -> tuple[BatchPlan, int]:
    """Micro-batches of (row, prompt ids) for the whole run, and the number of optimizer steps.

    Each planned step's rollouts serve `spec.iterations` optimizer steps; `train.max_steps` counts those.
    """
    t = recipe.train
    max_steps = t.max_steps
    plan = plan_batches(  # plan_batches shuffles and cuts any items when packing is off
        items, batch_size=t.batch_size, accum=t.grad_accum, epochs=t.epochs,  # type: ignore[arg-type]
        max_steps=None if max_steps is None else math.ceil(max_steps / spec.iterations),
        max_seq_len=t.max_seq_len, packing=False, pad_id=0, seed=t.seed, shuffle=t.shuffle,
    )
    steps = plan.steps * spec.iterations
    return plan, steps if max_steps is None else min(steps, max_steps)


def reward_metrics(terms: list[RewardTerm], scores: torch.Tensor) -> dict[str, float]:
    """Summed total and per-term rewards of N completions, and each one's std over them (a per-batch
    statistic): the loop's division by units turns them into means."""
    n = scores.shape[0]
    rewards = total(terms, scores)
    metrics = {"reward": float(rewards.sum()), "reward_std": per_batch(rewards.std(correction=0), n)}
    for k, term in enumerate(terms):
        metrics[f"reward/{term.name}"] = float(scores[:, k].sum())
        metrics[f"reward/{term.name}_std"] = per_batch(scores[:, k].std(correction=0), n)
    return metrics


@torch.no_grad()
def evaluate_rewards(
    model: torch.nn.Module, accelerator: Accelerator, tokenizer: Any, items: list[tuple[Prompt, list[int]]],
    terms: list[RewardTerm], spec: RolloutSpec, batch_size: int,
) -> dict[str, float]:
    """Greedy completions of the held-out prompts, scored: `eval_reward` (and per term), `eval_completion_length`,
    and `eval_loss` = -eval_reward, so the loop's best-checkpoint logic keeps the best-rewarded step."""
    if not items:
        return {}
    sums: dict[str, float] = {}
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch, texts = sample(model, tokenizer, [ids for _, ids in chunk], repeats=1,
                              max_new_tokens=spec.max_new_tokens, temperature=0.0)
        metrics = reward_metrics(terms, score(terms, [row for row, _ in chunk], texts))
        metrics["completion_length"] = float(batch["completion_mask"].sum())
        for key, value in metrics.items():
            if not key.endswith("_std"):
                sums[key] = sums.get(key, 0.0) + value
    names = sorted(sums)
    summed = accelerator.reduce(torch.tensor([sums[n] for n in names] + [len(items)], dtype=torch.float64,
                                             device=accelerator.device), "sum")
    out = {f"eval_{name}": float(value) / float(summed[-1]) for name, value in zip(names, summed[:-1])}
    out["eval_loss"] = -out["eval_reward"]
    return out


class RolloutSchedule:
    """Fresh rollouts every `iterations` optimizer steps; the steps in between train on the same ones again
    (which is what gives the clipped objectives of GRPO and PPO something to clip)."""

    def __init__(self, plan: BatchPlan, iterations: int, rollout: Any, finish: Any = None) -> None:
        self.plan, self.iterations, self.rollout, self.finish = plan, iterations, rollout, finish
        self.current: tuple[int, list[Batch]] | None = None

    def batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        """The step's micro-batches; `finish` (when given) sees a fresh rollout's micro-batches all at once,
        for what depends on the whole step (GRPO's batch-wide reward scale, its step-wide token count)."""
        index = step // self.iterations
        if self.current is None or self.current[0] != index:
            micro = self.plan.micro_batches[index * self.plan.accum:(index + 1) * self.plan.accum]
            batches = [self.rollout(model, items) for items in micro]
            if self.finish is not None:
                self.finish(batches)
            self.current = (index, batches)
        return self.current[1]

    def real_tokens(self) -> int:
        """Non-pad tokens of the rollouts in use (asked after `batches`)."""
        assert self.current is not None, "real_tokens is asked after step_batches"
        return sum(int(b["attention_mask"].sum()) for b in self.current[1])
