"""Packing: best-fit rows that keep every token, and packed rows that a model sees as separate samples."""

from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from tunesmith.data.packing import collate_packed, collate_padded, pack, pack_indices
from tunesmith.data.types import IGNORE_INDEX, Sample
from tunesmith.errors import UserError

VOCAB = 97


def _samples(lengths: list[int], seed: int = 0) -> list[Sample]:
    """Random ids; the first two tokens of each sample are prompt (untrained), the rest trained."""
    rng = random.Random(seed)
    out = []
    for n in lengths:
        ids = [rng.randrange(3, VOCAB) for _ in range(n)]
        out.append(Sample(ids, [IGNORE_INDEX] * min(2, n) + ids[2:]))
    return out


def _split(row_values: list[int], lengths: list[int]) -> list[list[int]]:
    out, at = [], 0
    for n in lengths:
        out.append(row_values[at : at + n])
        at += n
    return out


def test_best_fit_decreasing_on_a_known_case() -> None:
    rows = pack(_samples([6, 5, 4, 3, 2]), max_len=10)
    assert [row.lengths for row in rows] == [[6, 4], [5, 3, 2]]


def _best_fit_by_scan(lengths: list[int], max_len: int) -> list[list[int]]:
    """Best-fit decreasing spelled out: each sample, longest first (ties in input order), into the row with the
    least room that still fits it (the earliest such row on a tie), else a new row."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if not lengths[i]:
            continue
        fits = [r for r in range(len(rows)) if room[r] >= lengths[i]]
        if fits:
            best = min(fits, key=lambda r: (room[r], r))
        else:
            best = len(rows)
            rows.append([])
            room.append(max_len)
        rows[best].append(i)
        room[best] -= lengths[i]
    return rows


@pytest.mark.parametrize("full_share", [0.0, 0.5, 0.97])
def test_pack_indices_equals_best_fit_with_full_length_samples(full_share: float) -> None:
    """Samples that already fill max_len (a corpus cut into blocks: nearly all of them) take a shortcut; the
    rows must be those of the plain best-fit scan."""
    rng = random.Random(int(full_share * 100))
    lengths = [16 if rng.random() < full_share else rng.randrange(0, 16) for _ in range(300)]
    assert pack_indices(np.array(lengths, np.int64), 16) == _best_fit_by_scan(lengths, 16)


def test_pack_keeps_every_token_within_max_len_and_beats_naive() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 100) for _ in range(300)]
    samples = _samples(lengths)
    rows = pack(samples, max_len=128)

    assert all(len(row.input_ids) <= 128 for row in rows)
    assert all(len(row.input_ids) == len(row.labels) == len(row.position_ids) == sum(row.lengths) for row in rows)
    unpacked = sorted(ids for row in rows for ids in _split(row.input_ids, row.lengths))
    assert unpacked == sorted(s.input_ids for s in samples)

    naive_rows, room = 0, 0  # next-fit in input order
    for n in lengths:
        if n > room:
            naive_rows, room = naive_rows + 1, 128
        room -= n
    lower_bound = -(-sum(lengths) // 128)
    assert lower_bound <= len(rows) < naive_rows
    assert len(rows) <= lower_bound + 2  # best-fit decreasing is near optimal on this mix


def test_pack_restarts_positions_and_masks_each_first_token() -> None:
    samples = _samples([5, 3, 4, 1])
    samples[0] = Sample(samples[0].input_ids, list(samples[0].input_ids))  # fully trained, first token too
    by_ids = {tuple(s.input_ids): s for s in samples}
    for row in pack(samples, max_len=8):
        for ids, labels, positions in zip(
            _split(row.input_ids, row.lengths), _split(row.labels, row.lengths), _split(row.position_ids, row.lengths)
        ):
            assert positions == list(range(len(ids)))
            assert labels == [IGNORE_INDEX] + by_ids[tuple(ids)].labels[1:]


def test_pack_is_deterministic_drops_empty_samples_and_rejects_too_long() -> None:
    samples = _samples([4, 4, 4, 0, 4])
    rows = pack(samples, max_len=8)
    assert [r.input_ids for r in rows] == [r.input_ids for r in pack(samples, max_len=8)]
    # Equal lengths keep input order: samples 0 and 1 share the first row.
    assert rows[0].input_ids == samples[0].input_ids + samples[1].input_ids
    assert sum(len(r.lengths) for r in rows) == 4
    with pytest.raises(UserError, match="9 tokens exceeds the packing length 8"):
        pack(_samples([9]), max_len=8)


def test_collate_packed_pads_without_attention_mask() -> None:
    rows = pack(_samples([6, 5, 3]), max_len=8)  # rows of 6 and 8 tokens
    batch = collate_packed(rows, pad_id=1)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].shape == (2, 8)
    short = min(range(2), key=lambda i: len(rows[i].input_ids))
    assert batch["input_ids"][short, 6:].tolist() == [1, 1]
    assert batch["labels"][short, 6:].tolist() == [IGNORE_INDEX] * 2
    assert batch["position_ids"][short].tolist() == list(range(6)) + [0, 1]


def test_collate_padded_right_pads_with_attention_mask() -> None:
    samples = _samples([3, 5])
    batch = collate_padded(samples, pad_id=0)
    assert batch["input_ids"][0].tolist() == samples[0].input_ids + [0, 0]
    assert batch["labels"][0].tolist() == samples[0].labels + [IGNORE_INDEX] * 2
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]


def _tiny_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, attn_implementation="sdpa", dtype=torch.float32,
    )
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**common)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**common)).eval()


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_packed_rows_are_isolated(family: str) -> None:
    model = _tiny_model(family)
    samples = _samples([9, 5, 12, 3, 7, 4], seed=2)
    # Half fully trained (as CPT blocks are): their first token would be a target across a boundary.
    samples = [Sample(s.input_ids, list(s.input_ids)) if i % 2 else s for i, s in enumerate(samples)]
    rows = pack(samples, max_len=21)  # rows [12, 9] and [7, 5, 4, 3]
    assert all(len(row.lengths) > 1 for row in rows)
    batch = collate_packed(rows, pad_id=0)
    assert batch["input_ids"][:, -1].eq(0).any()  # some padding, to show it does not matter

    with torch.no_grad():
        packed = model(**batch, use_cache=False)
        alone = [model(input_ids=torch.tensor([s.input_ids]), labels=torch.tensor([s.labels])) for s in samples]

    counts = [sum(label != IGNORE_INDEX for label in s.labels[1:]) for s in samples]
    weighted = sum(out.loss * n for out, n in zip(alone, counts)) / sum(counts)
    assert packed.loss.item() == pytest.approx(weighted.item(), abs=1e-5)

    logits_by_ids = {tuple(s.input_ids): out.logits[0] for s, out in zip(samples, alone)}
    for r, row in enumerate(rows):
        at = 0
        for ids in _split(row.input_ids, row.lengths):
            got = packed.logits[r, at : at + len(ids)]
            torch.testing.assert_close(got, logits_by_ids[tuple(ids)], atol=1e-4, rtol=0)
            at += len(ids)


def test_default_use_cache_leaks_between_packed_samples() -> None:
    """The trap the docstring of packing.py warns about: with the cache on, samples attend across boundaries."""
    model = _tiny_model("llama")
    samples = _samples([6, 6], seed=3)
    (row,) = pack(samples, max_len=12)
    batch = collate_packed([row])
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0, 6:]
        alone = model(input_ids=torch.tensor([row.input_ids[6:]])).logits[0]
    assert (leaky - alone).abs().max() > 1e-2


def test_a_plan_leaves_the_garbage_collector_as_it_found_it() -> None:
    """plan_batches pauses the cyclic collector while it lists rows; it must come back on, error or not."""
    import gc

    from tunesmith.train.batches import plan_batches

    options = dict(batch_size=2, accum=1, epochs=1, max_steps=None, max_seq_len=8, packing=True, pad_id=0, seed=0)
    assert gc.isenabled()
    plan_batches(_samples([3, 5, 8, 2]), **options)
    assert gc.isenabled()
    with pytest.raises(UserError):
        plan_batches(_samples([3, 12]), **options)  # longer than the packing length
    assert gc.isenabled()
    gc.disable()
    try:
        plan_batches(_samples([3, 5]), **options)
        assert not gc.isenabled(), "a caller that had it off keeps it off"
    finally:
        gc.enable()
