"""Packed samples do not see each other, on every family the fused head supports, through the loss the SFT
objective computes (`trained_nll_sum`): a packed row's summed NLL equals the sum of its samples' NLLs
computed one at a time."""

from __future__ import annotations

import random

import pytest
import torch

from tunesmith.data.packing import collate_packed, pack
from tunesmith.data.types import IGNORE_INDEX, Sample
from tunesmith.methods.language_modeling.objective import FUSED_FAMILIES, fused_head, trained_nll_sum
from tunesmith.testing.tiny import tiny_model

VOCAB = 96


def _samples(lengths: list[int], seed: int = 0) -> list[Sample]:
    """Random ids; the first two tokens are prompt, the rest trained (every other sample fully trained)."""
    rng = random.Random(seed)
    out = []
    for k, n in enumerate(lengths):
        ids = [rng.randrange(4, VOCAB) for _ in range(n)]
        out.append(Sample(ids, list(ids) if k % 2 else [IGNORE_INDEX] * 2 + ids[2:]))
    return out


@pytest.mark.parametrize("family", sorted(FUSED_FAMILIES))
def test_packed_loss_equals_the_samples_alone(family: str) -> None:
    model = tiny_model(family, vocab_size=VOCAB, seed=0).float().eval()
    assert fused_head(model) is not None, "the objective's fused route is the one under test"
    samples = _samples([9, 5, 12, 3, 7, 4], seed=2)
    rows = pack(samples, max_len=21)
    assert all(len(row.lengths) > 1 for row in rows)
    with torch.no_grad():
        for row in rows:
            batch = collate_packed([row])
            packed = trained_nll_sum(model, {k: v for k, v in batch.items() if k != "labels"}, batch["labels"])
            alone = torch.zeros(())
            at = 0
            for n in row.lengths:  # each sample as packing trains it: its first label dropped
                ids, labels = row.input_ids[at:at + n], row.labels[at:at + n]
                alone += trained_nll_sum(model, {"input_ids": torch.tensor([ids])}, torch.tensor([labels]))
                at += n
            assert packed.item() == pytest.approx(alone.item(), rel=1e-5), family
