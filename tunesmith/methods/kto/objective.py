"""`method: kto` in the shared loop: answers judged one at a time against a batch KL baseline."""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.data.packing import collate_padded
from tunesmith.data.pairs import as_unpaired, mismatched_answers, tokenize_answer
from tunesmith.data.pipeline import PreparedData
from tunesmith.data.types import Unpaired
from tunesmith.methods.kto import KtoSpec
from tunesmith.methods.kto.losses import kto_kl, kto_loss
from tunesmith.methods.shared.preference import Planned, PlannedObjective, per_batch, sequence_logps
from tunesmith.methods.shared.reference import Reference, forward
from tunesmith.recipe.spec import Recipe
from tunesmith.train.objective import Batch


class Kto(PlannedObjective):
    """`method: kto`: each answer judged alone against a KL baseline (KTO paper, as TRL computes it).

    Rows in `kto` format are used as they are; a preference row gives one desirable and one undesirable
    answer. The KL baseline of a micro-batch pairs prompt i with answer i-1 (cyclically), which is why
    KTO needs micro-batches of two or more. Its `accuracy` is the share of answers whose implicit reward
    has the sign of their label; `rewards/chosen` and `rewards/rejected` are the desirable and undesirable means.
    """

    sequences_per_unit = 1  # the unit is one judged answer

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
        kl = collate_padded(mismatched_answers(rows, *fit), self.pad_id)
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
