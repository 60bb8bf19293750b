"""The loss pieces: parity with transformers, the chunked head path, and accumulation normalisation."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tunesmith.data.types import IGNORE_INDEX
from tunesmith.methods.shared.token_nll import (
    count_trained_tokens,
    fused_linear_nll_sum,
    kept_nll_sum,
    predicting_positions,
    token_nll_sum,
    trained_targets,
)
from tunesmith.testing.tiny import tiny_model

VOCAB = 128


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
    )
    return LlamaForCausalLM(config).float()


def padded_batch(lengths: list[int], prompt_lengths: list[int]) -> dict[str, torch.Tensor]:
    """Right-padded rows; the prompt and the padding are IGNORE_INDEX, so trained lengths differ per row."""
    generator = torch.Generator().manual_seed(1)
    width = max(lengths)
    input_ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, (length, prompt) in enumerate(zip(lengths, prompt_lengths)):
        input_ids[row, :length] = torch.randint(1, VOCAB, (length,), generator=generator)
        attention_mask[row, :length] = 1
        labels[row, prompt:length] = input_ids[row, prompt:length]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


LENGTHS = [16, 5, 12, 9, 16, 7, 14, 10]
PROMPTS = [3, 1, 8, 2, 10, 4, 1, 6]


def test_count_trained_tokens_counts_shifted_targets_only() -> None:
    labels = torch.tensor([[5, 6, IGNORE_INDEX, 7], [IGNORE_INDEX, IGNORE_INDEX, 8, 9]])
    # Column 0 is never a target (the 5 is not counted): row 0 trains {6, 7}, row 1 trains {8, 9}.
    assert count_trained_tokens(labels) == 4
    logits = torch.randn(2, 4, 10)
    assert int(token_nll_sum(logits, labels)[1]) == 4


def test_token_nll_sum_matches_transformers_loss() -> None:
    model = tiny_llama()
    batch = padded_batch(LENGTHS, PROMPTS)
    out = model(**batch)
    nll_sum, count = token_nll_sum(out.logits, batch["labels"])
    assert nll_sum.dtype == torch.float32
    assert int(count) == count_trained_tokens(batch["labels"]) == sum(n - p for n, p in zip(LENGTHS, PROMPTS))
    torch.testing.assert_close(nll_sum / count, out.loss, rtol=0, atol=1e-6)


def test_token_nll_sum_upcasts_low_precision_logits() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 50).bfloat16()
    labels = torch.randint(0, 50, (2, 6))
    nll_sum, _ = token_nll_sum(logits, labels)
    reference, _ = token_nll_sum(logits.float(), labels)
    assert nll_sum.dtype == torch.float32
    torch.testing.assert_close(nll_sum, reference)


def fused_nll(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, **kw) -> torch.Tensor:
    """The fused head + loss over (B, T, H) hidden states, as `lm_head.trained_nll_sum` calls it."""
    return fused_linear_nll_sum(hidden[predicting_positions(labels)], weight, trained_targets(labels), **kw)


@pytest.mark.parametrize("chunk_size", [3, 1024])
def test_fused_nll_matches_plain_path_values_and_gradients(chunk_size: int) -> None:
    batch = padded_batch(LENGTHS, PROMPTS)
    count = count_trained_tokens(batch["labels"])

    def grads_of(use_fused: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model = tiny_llama()
        if use_fused:
            hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
            nll_sum = fused_nll(hidden, model.lm_head.weight, batch["labels"], chunk_size=chunk_size)
        else:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            nll_sum, plain_count = token_nll_sum(logits, batch["labels"])
            assert int(plain_count) == count
        (nll_sum / count).backward()
        return nll_sum.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    plain_sum, plain_grads = grads_of(use_fused=False)
    fused_sum, fused_grads = grads_of(use_fused=True)
    torch.testing.assert_close(fused_sum, plain_sum, rtol=1e-6, atol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=0, atol=1e-5, msg=name)


def test_fused_nll_applies_bias_and_softcap_like_the_plain_path() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(2, 7, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    bias = torch.randn(40, requires_grad=True)
    labels = torch.randint(0, 40, (2, 7))
    labels[0, :3] = IGNORE_INDEX
    cap = 5.0

    logits = cap * torch.tanh((hidden @ weight.T + bias) / cap)
    plain, _ = token_nll_sum(logits, labels)
    plain_grads = torch.autograd.grad(plain, (hidden, weight, bias))
    fused = fused_nll(hidden, weight, labels, chunk_size=4, bias=bias, logit_softcap=cap)
    fused_grads = torch.autograd.grad(fused, (hidden, weight, bias))

    torch.testing.assert_close(fused, plain)
    for got, want in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("trainable_head", [False, True])
def test_fused_nll_keeps_no_full_vocabulary_logits_for_backward(trainable_head: bool) -> None:
    """Autograd must hold gradients of the hidden states (and of a trainable head), not (positions, vocab) logits."""
    torch.manual_seed(0)
    positions, vocab, width = 64, 4096, 16
    hidden = torch.randn(1, positions + 1, width, requires_grad=True)
    weight = torch.randn(vocab, width, requires_grad=trainable_head)
    labels = torch.randint(0, vocab, (1, positions + 1))
    saved_bytes = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved_bytes.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        nll_sum = fused_nll(hidden, weight, labels, chunk_size=16)
    one_chunk_of_logits = 16 * vocab * 4
    head_gradient = vocab * width * 4 if trainable_head else 0
    assert sum(saved_bytes) < one_chunk_of_logits + head_gradient
    assert sum(saved_bytes) < positions * vocab * 4  # never the full logits
    nll_sum.backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0
    if trainable_head:
        assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_nothing_trained_gives_zero_that_still_backpropagates() -> None:
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    weight = torch.randn(30, 8, requires_grad=True)
    labels = torch.full((2, 5), IGNORE_INDEX)
    nll_sum = fused_nll(hidden, weight, labels)
    assert nll_sum.item() == 0.0 and count_trained_tokens(labels) == 0
    nll_sum.backward()
    assert torch.count_nonzero(weight.grad) == 0
    plain_sum, plain_count = token_nll_sum(hidden @ weight.T, labels)
    assert plain_sum.item() == 0.0 and int(plain_count) == 0 and plain_sum.requires_grad


def test_mismatched_labels_fail_with_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 5, 8\) and \(2, 4\)"):
        token_nll_sum(torch.randn(2, 5, 8), torch.zeros(2, 4, dtype=torch.long))


def accumulated_grads(micro_size: int, normalise_by_total: bool) -> dict[str, torch.Tensor]:
    """Gradients of one optimizer step over the 8-row batch split into micro-batches of `micro_size`."""
    model = tiny_llama()
    batch = padded_batch(LENGTHS, PROMPTS)
    total = count_trained_tokens(batch["labels"])
    micro_batches = len(LENGTHS) // micro_size
    for start in range(0, len(LENGTHS), micro_size):
        micro = {key: value[start : start + micro_size] for key, value in batch.items()}
        logits = model(input_ids=micro["input_ids"], attention_mask=micro["attention_mask"]).logits
        nll_sum, count = token_nll_sum(logits, micro["labels"])
        loss = nll_sum / total if normalise_by_total else nll_sum / count / micro_batches
        loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_accumulating_sums_over_total_tokens_equals_the_full_batch_gradient() -> None:
    full = accumulated_grads(micro_size=8, normalise_by_total=True)
    accumulated = accumulated_grads(micro_size=2, normalise_by_total=True)
    for name, grad in full.items():
        torch.testing.assert_close(accumulated[name], grad, rtol=0, atol=1e-5, msg=name)


def test_averaging_per_micro_batch_means_does_not_equal_the_full_batch_gradient() -> None:
    """The control: the naive normalisation is measurably wrong, so the test above can fail."""
    full = accumulated_grads(micro_size=8, normalise_by_total=True)
    naive = accumulated_grads(micro_size=2, normalise_by_total=False)
    worst = max(float((naive[name] - grad).abs().max()) for name, grad in full.items())
    assert worst > 1e-3


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2", "phi3", "gpt2", "gpt_neox"])
def test_loss_on_kept_logits_equals_full_logits_loss_and_gradient(family: str) -> None:
    """`logits_to_keep=predicting_positions(labels)` changes the cost, not the loss or its gradient.

    gemma2 covers the final-logit softcap (applied after the head, so slicing must come before it), gpt2
    and gpt_neox the non-Llama heads; a packed row and a padded batch both carry untrained positions.
    """
    model = tiny_model(family, vocab_size=VOCAB, seed=0).float()
    batches = [padded_batch(LENGTHS, PROMPTS)]
    packed = padded_batch([16], [3])
    packed["position_ids"] = torch.tensor([list(range(9)) + list(range(7))])
    packed["labels"][0, 9] = IGNORE_INDEX  # the first token of the second packed sample
    del packed["attention_mask"]
    batches.append(packed)
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        keep = predicting_positions(batch["labels"])
        assert keep.sum() == count_trained_tokens(batch["labels"])
        model.zero_grad()
        full, _ = token_nll_sum(model(**inputs, use_cache=False).logits, batch["labels"])
        full.backward()
        full_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        kept_logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
        assert kept_logits.reshape(-1, VOCAB).shape[0] == int(keep.sum())
        kept, count = kept_nll_sum(kept_logits, batch["labels"])
        kept.backward()
        kept_grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert int(count) == int(keep.sum())
        assert torch.allclose(kept, full, rtol=1e-5), (float(kept), float(full))
        assert len(kept_grads) == len(full_grads)
        for a, b in zip(kept_grads, full_grads):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_kept_nll_sum_rejects_logits_that_do_not_match_the_labels() -> None:
    labels = torch.tensor([[5, 6, IGNORE_INDEX, 7]])
    with pytest.raises(ValueError, match="3 kept logits for 2 trained tokens"):
        kept_nll_sum(torch.randn(3, 10), labels)


def test_training_slices_logits_through_peft_and_falls_back_without_support() -> None:
    """The SFT objective finds `logits_to_keep` under the PEFT wrapper; a model without it gets full logits."""
    from peft import LoraConfig, get_peft_model

    from tunesmith.methods.language_modeling.objective import accepts_logits_to_keep

    wrapped = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"]))
    assert accepts_logits_to_keep(wrapped)

    class NoSlicing(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return input_ids

    assert not accepts_logits_to_keep(NoSlicing())
