"""Preference objectives in the shared loop: `method: dpo` (sigmoid, ipo, hinge, simpo), `orpo` and `kto`.

A DPO/ORPO micro-batch is B pairs as one right-padded batch of 2B sequences, chosen answers first; a KTO
micro-batch is B judged answers plus, for its KL baseline, each prompt with the previous row's answer (as
TRL does). Loss units are pairs (DPO, ORPO) or answers (KTO), so the loop's division gives the mean over
the step. Logged per step and on the held-out split (`eval_` prefixed): loss, rewards/chosen,
rewards/rejected, margin and accuracy (share of pairs whose chosen answer out-scores the rejected one).

The reference policy (reference.py) is the adapter-disabled model or a frozen copy; with `precompute_ref`
its log-probs are computed once, for every planned micro-batch, before the first update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate import Accelerator, PartialState

from tunesmith.data.packing import collate_padded
from tunesmith.data.pairs import Pair, as_unpaired, tokenize_answer, tokenize_pairs
from tunesmith.data.pipeline import PreparedData
from tunesmith.data.types import Unpaired
from tunesmith.recipe import DpoSpec, KtoSpec, OrpoSpec, Recipe
from tunesmith.train.batches import plan_batches
from tunesmith.train.objective import Batch
from tunesmith.train.pref_losses import dpo_loss, kto_kl, kto_loss, orpo_loss, scored_tokens, token_logps
from tunesmith.train.reference import Reference, forward


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
        return sum(int(v.sum()) for b in self.train_batches(step) for k, v in b.items() if k.endswith("attention_mask"))

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


def plan_pairs(recipe: Recipe, data: PreparedData, tokenizer: Any) -> Planned:
    """The run's micro-batches of tokenized preference pairs (DPO, ORPO, reward model)."""
    max_len, pad_id, prompt_len = recipe.train.max_seq_len, tokenizer.pad_token_id, recipe.data.max_prompt_len
    return Planned(recipe, tokenize_pairs(data.train_examples, tokenizer, max_len, prompt_len),
                   tokenize_pairs(data.eval_examples, tokenizer, max_len, prompt_len),
                   lambda pairs: collate_pairs(pairs, pad_id))


class Dpo:
    """`method: dpo`: -log sigma(beta (log-ratio chosen - log-ratio rejected)) and its variants (pref_losses)."""

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        self.planned = plan_pairs(recipe, data, tokenizer)
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

    @property
    def steps(self) -> int:
        return self.planned.steps

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return self.planned.train_batches(step)

    def units(self, batch: Batch) -> int:
        return batch["input_ids"].shape[0] // 2  # pairs

    def real_tokens(self, step: int) -> int:
        return self.planned.real_tokens(step)

    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        return evaluate_batches(self, model, accelerator, self.planned.eval_batches())


class Orpo:
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

    @property
    def steps(self) -> int:
        return self.planned.steps

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return self.planned.train_batches(step)

    def units(self, batch: Batch) -> int:
        return batch["input_ids"].shape[0] // 2  # pairs

    def real_tokens(self, step: int) -> int:
        return self.planned.real_tokens(step)

    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        return evaluate_batches(self, model, accelerator, self.planned.eval_batches())


class Kto:
    """`method: kto`: each answer judged alone against a KL baseline (KTO paper, as TRL computes it).

    Rows in `kto` format are used as they are; a preference row gives one desirable and one undesirable
    answer. The KL baseline of a micro-batch pairs prompt i with answer i-1 (cyclically), which is why
    KTO needs micro-batches of two or more. Its `accuracy` is the share of answers whose implicit reward
    has the sign of their label; `rewards/chosen` and `rewards/rejected` are the desirable and undesirable means.
    """

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        self.spec = recipe.kto or KtoSpec()
        self.tokenizer, self.max_len, self.pad_id = tokenizer, recipe.train.max_seq_len, tokenizer.pad_token_id
        self.max_prompt_len = recipe.data.max_prompt_len
        self.planned = Planned(recipe, as_unpaired(data.train_examples), as_unpaired(data.eval_examples), self.collate)
        self.reference = Reference(model, recipe.train.mixed_precision, keep_copy=not self.spec.precompute_ref)
        if self.spec.precompute_ref:
            self.planned.precompute(model, lambda batch: self._reference_logps(model, batch))

    def collate(self, rows: list[Unpaired]) -> Batch:
        fit = (self.tokenizer, self.max_len, self.max_prompt_len)
        answers = [tokenize_answer(fit[0], r.prompt, r.completion, *fit[1:]) for r in rows]
        mismatched = [tokenize_answer(fit[0], r.prompt, rows[i - 1].completion, *fit[1:]) for i, r in enumerate(rows)]
        kl = collate_padded(mismatched, self.pad_id)
        return {**collate_padded(answers, self.pad_id), **{f"kl_{k}": v for k, v in kl.items()},
                "desirable": torch.tensor([r.desirable for r in rows])}

    def _reference_logps(self, model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        logits, _ = forward(model, batch, reference=self.reference)
        kl_logits, _ = forward(model, batch, "kl_", reference=self.reference)
        return {"ref_logps": sequence_logps(logits, batch["labels"]),
                "kl_ref_logps": sequence_logps(kl_logits, batch["kl_labels"])}

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        logits, _ = forward(model, batch)
        logps = sequence_logps(logits, batch["labels"])  # (B,)
        with torch.no_grad():
            kl_logits, _ = forward(model, batch, "kl_")
            kl_logps = sequence_logps(kl_logits, batch["kl_labels"])
        refs = batch if "ref_logps" in batch else self._reference_logps(model, batch)
        kl = kto_kl(kl_logps, refs["kl_ref_logps"])
        s, desirable = self.spec, batch["desirable"].bool()
        losses, rewards = kto_loss(logps - refs["ref_logps"], desirable, kl, beta=s.beta,
                                   desirable_weight=s.desirable_weight, undesirable_weight=s.undesirable_weight)
        n = len(rewards)
        metrics = {"kl": per_batch(kl, n), "accuracy": float(((rewards > 0) == desirable).float().sum())}
        for name, rows in (("rewards/chosen", desirable), ("rewards/rejected", ~desirable)):
            if rows.any():  # the class mean of this micro-batch (a micro-batch without the class adds 0)
                metrics[name] = per_batch(rewards[rows].mean(), n)
        return losses.sum(), metrics

    @property
    def steps(self) -> int:
        return self.planned.steps

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return self.planned.train_batches(step)

    def units(self, batch: Batch) -> int:
        return batch["input_ids"].shape[0]  # answers

    def real_tokens(self, step: int) -> int:
        return self.planned.real_tokens(step)

    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        return evaluate_batches(self, model, accelerator, self.planned.eval_batches())
