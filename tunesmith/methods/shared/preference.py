"""Preference pairs in the shared loop: what `dpo`, `orpo`, `kto` and `reward` have in common.

A DPO/ORPO/reward micro-batch is B pairs as one right-padded batch of 2B sequences, chosen answers first (on a
vision-language model, DPO's come from its processor with their pictures: vision/pairs.py); a KTO micro-batch is B judged answers (methods/kto). Loss units are pairs (or answers), so the loop's division
gives the mean over the step. Logged per step and on the held-out split (`eval_` prefixed): loss,
rewards/chosen, rewards/rejected, margin and accuracy (share of pairs whose chosen answer out-scores the
rejected one). With `precompute_ref` the reference log-probs are computed once, for every planned
micro-batch, before the first update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate import Accelerator, PartialState

from tunesmith.data.packing import collate_padded
from tunesmith.data.pairs import Pair, tokenize_pairs
from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.shared.logprobs import token_logps
from tunesmith.recipe.spec import Recipe
from tunesmith.train.batches import plan_batches
from tunesmith.train.objective import Batch
from tunesmith.train.unwrap import unwrap_to_transformers
from tunesmith.vision.families import is_vision_config


class Planned:
    """The run's micro-batches of items (pairs or answers), fixed up front from the seed, and the held-out ones.

    `collate` turns a list of items into a batch; with `precompute` the reference log-probs of every
    micro-batch are computed once and attached to it as `ref_logps` (and `kl_ref_logps` for KTO).
    """

    def __init__(self, recipe: Recipe, train: Sequence[Any], held_out: Sequence[Any], collate: Callable[[list], Batch]):
        t = recipe.train
        # plan_batches shuffles and cuts any items when packing is off (it only measures Samples to pack them).
        self.plan = plan_batches(
            list(train), batch_size=t.batch_size, accum=t.grad_accum, epochs=t.epochs, max_steps=t.max_steps,
            max_seq_len=t.max_seq_len, packing=False, pad_id=0, seed=t.seed, shuffle=t.shuffle,
        )
        self.held_out = [list(held_out[i:i + t.batch_size]) for i in range(0, len(held_out), t.batch_size)]
        self.collate = collate
        self.processor: Any = None  # a vision-language model's, whose batches it makes (the run saves it)
        self.refs: dict[str, list[dict[str, torch.Tensor]]] = {}
        self._last: tuple[int, list[Batch]] = (-1, [])

    @property
    def steps(self) -> int:
        return self.plan.steps

    def train_batches(self, step: int) -> list[Batch]:
        if self._last[0] != step:
            first = step * self.plan.accum
            self._last = (step, [self._batch("train", first + k) for k in range(self.plan.accum)])
        return self._last[1]

    def real_tokens(self, step: int) -> int:
        """Tokens of step `step`'s sequences (KL sequences included), padding excluded."""
        return sum(int(v.sum()) for b in self.train_batches(step) for k, v in b.items()
                   if k.endswith("attention_mask") and not k.startswith("pixel"))

    def eval_batches(self) -> list[Batch]:
        return [self._batch("eval", m) for m in range(len(self.held_out))]

    def _items(self, split: str, m: int) -> list:
        return self.plan.micro_batches[m] if split == "train" else self.held_out[m]

    def _batch(self, split: str, m: int) -> Batch:
        batch = self.collate(self._items(split, m))
        return {**batch, **self.refs[split][m]} if split in self.refs else batch

    def precompute(self, model: torch.nn.Module, score: Callable[[Batch], dict[str, torch.Tensor]]) -> None:
        """Run `score` (the reference forward of `model`) on every micro-batch; results are kept on the CPU.

        The objective is built before `accelerator.prepare` places the model, so it is placed here first.
        """
        device = accelerator_device()
        if next(model.parameters()).device != device:
            model.to(device)
        for split, count in (("train", len(self.plan.micro_batches)), ("eval", len(self.held_out))):
            refs = []
            for m in range(count):
                batch = {k: v.to(device) for k, v in self.collate(self._items(split, m)).items()}
                refs.append({k: v.cpu() for k, v in score(batch).items()})
            self.refs[split] = refs


class PlannedObjective:
    """The loop-facing half of an objective whose batches are fixed up front in `self.planned`: DPO, ORPO,
    KTO and the reward model differ only in how they collate and score a batch (`loss_sum`).

    `sequences_per_unit` is 2 for pairs (a batch holds the chosen then the rejected answers), 1 for KTO's
    single judged answers: the loss unit the loop divides by."""

    planned: Planned
    sequences_per_unit = 2

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    @property
    def steps(self) -> int:
        return self.planned.steps

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return self.planned.train_batches(step)

    def units(self, batch: Batch) -> int:
        return batch["input_ids"].shape[0] // self.sequences_per_unit

    def real_tokens(self, step: int) -> int:
        return self.planned.real_tokens(step)

    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        return evaluate_batches(self, model, accelerator, self.planned.eval_batches())


def accelerator_device() -> torch.device:
    """The accelerator's device (the loop creates the Accelerator before the objective)."""
    return PartialState().device


def per_batch(value: torch.Tensor | float, units: int) -> float:
    """A statistic of the whole micro-batch, returned as value x units: the loop divides metrics by units,
    so it logs the unit-weighted average of the statistic over the step's micro-batches."""
    return float(value) * units


@torch.no_grad()
def evaluate_batches(objective: Any, model: torch.nn.Module, accelerator: Accelerator, batches: list[Batch]) -> dict[str, float]:
    """`eval_loss` and every metric of `objective.loss_sum`, as means over the held-out units of all ranks."""
    if not batches:
        return {}
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {"loss": 0.0}
    units = 0
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        loss, metrics = objective.loss_sum(model, batch)
        totals["loss"] += float(loss)
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value
        units += objective.units(batch)
    model.train(was_training)
    names = sorted(totals)
    summed = accelerator.reduce(torch.tensor([totals[n] for n in names] + [units], dtype=torch.float64,
                                             device=accelerator.device), "sum")
    count = max(float(summed[-1]), 1.0)
    return {f"eval_{name}": float(value) / count for name, value in zip(names, summed[:-1])}


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of each sequence's answer tokens: (B,)."""
    return token_logps(logits, labels).sum(-1)


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Summed implicit rewards, margins and wins of B pairs (the loop turns sums into means)."""
    return {
        "rewards/chosen": float(chosen.sum()), "rewards/rejected": float(rejected.sum()),
        "margin": float((chosen - rejected).sum()), "accuracy": float((chosen > rejected).float().sum()),
    }


def collate_pairs(pairs: list[Pair], pad_id: int) -> Batch:
    """B pairs as one right-padded batch of 2B sequences, the chosen answers first."""
    return collate_padded([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)


def plan_pairs(recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module | None = None) -> Planned:
    """The run's micro-batches of tokenized preference pairs (DPO, ORPO, reward model). Given the model (DPO), a
    vision-language one gets its pairs with their pictures through its processor (vision/pairs.py)."""
    if model is not None and is_vision_config(getattr(unwrap_to_transformers(model), "config", None)):
        from tunesmith.vision.pairs import plan_image_pairs

        images = plan_image_pairs(recipe, data, model)
        planned = Planned(recipe, images.train, images.held_out, images.collate)
        planned.processor = images.processor
        return planned
    max_len, pad_id, prompt_len = recipe.train.max_seq_len, tokenizer.pad_token_id, recipe.data.max_prompt_len
    return Planned(recipe, tokenize_pairs(data.train_examples, tokenizer, max_len, prompt_len),
                   tokenize_pairs(data.eval_examples, tokenizer, max_len, prompt_len),
                   lambda pairs: collate_pairs(pairs, pad_id))
