"""Per-sample attention over packed rows against the same samples run one by one, and against transformers' sdpa."""

from __future__ import annotations

import copy

import pytest
import torch

from tunesmith.speedups.packed_attention import NAME, segment_bounds, use_per_sample_attention
from tunesmith.testing.tiny import tiny_model

ROW_LENGTHS = [[10, 25, 5], [40], [3, 30, 7]]  # three packed rows of 40 tokens


def models(family: str = "llama", **kw: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same random model twice: under transformers' sdpa, and switched to per-sample attention."""
    sdpa = tiny_model(family, vocab_size=128, seed=1, **kw)
    per_sample = copy.deepcopy(sdpa)
    assert use_per_sample_attention(per_sample, torch.device("cpu"))
    assert per_sample.config._attn_implementation == NAME
    return sdpa.train(), per_sample.train()


def packed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 128, (len(ROW_LENGTHS), 40), generator=torch.Generator().manual_seed(2))
    positions = torch.tensor([[i for n in lengths for i in range(n)] for lengths in ROW_LENGTHS])
    return ids, positions


def test_segments_start_wherever_the_position_does_not_step_by_one() -> None:
    assert segment_bounds(torch.tensor([0, 1, 2, 0, 1, 5, 6])) == [(0, 3), (3, 5), (5, 7)]
    assert segment_bounds(torch.tensor([4, 5, 6])) == [(0, 3)]


@pytest.mark.parametrize("kv_heads", [4, 2])  # plain and grouped-query attention
def test_packed_rows_equal_their_samples_run_one_by_one(kv_heads: int) -> None:
    sdpa, per_sample = models(heads=4, kv_heads=kv_heads)
    ids, positions = packed_batch()
    logits = per_sample(input_ids=ids, position_ids=positions, use_cache=False).logits
    for row, lengths in enumerate(ROW_LENGTHS):
        start = 0
        for n in lengths:
            alone = sdpa(input_ids=ids[row:row + 1, start:start + n], use_cache=False).logits[0]
            torch.testing.assert_close(logits[row, start:start + n], alone, rtol=1e-5, atol=1e-5)
            start += n


def test_logits_and_gradients_equal_transformers_masked_sdpa() -> None:
    sdpa, per_sample = models()
    ids, positions = packed_batch()
    outputs = [m(input_ids=ids, position_ids=positions, labels=ids, use_cache=False) for m in (sdpa, per_sample)]
    torch.testing.assert_close(outputs[1].logits, outputs[0].logits, rtol=1e-5, atol=1e-5)
    for out in outputs:
        out.loss.backward()
    for (name, a), b in zip(sdpa.named_parameters(), per_sample.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_padding_masks_and_generation_go_through_sdpa_unchanged() -> None:
    sdpa, per_sample = models()
    ids, _ = packed_batch()
    mask = torch.ones_like(ids)
    mask[0, 30:] = 0
    mask[2, :4] = 0
    assert torch.equal(sdpa(input_ids=ids, attention_mask=mask).logits, per_sample(input_ids=ids, attention_mask=mask).logits)
    sdpa.eval(), per_sample.eval()
    prompt = ids[:1, :6]
    assert torch.equal(sdpa.generate(prompt, max_new_tokens=8, do_sample=False),
                       per_sample.generate(prompt, max_new_tokens=8, do_sample=False))


def test_only_sdpa_models_on_cpu_switch() -> None:
    model = tiny_model("llama", vocab_size=128)
    assert not use_per_sample_attention(model, torch.device("cuda"))
    model.set_attn_implementation("eager")
    assert not use_per_sample_attention(model, torch.device("cpu"))
    assert model.config._attn_implementation == "eager"
