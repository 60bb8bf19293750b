"""The three routes from hidden states to the SFT loss give the same loss and gradients.

Fused (decoder + chunked head with gradients formed in the forward), sliced (`logits_to_keep`) and full
logits must agree on every family the fused route accepts, wrapped by PEFT or not, on packed rows and
padded batches; the fused route must refuse what it cannot do exactly.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tunesmith.data.types import IGNORE_INDEX
from tunesmith.methods.language_modeling.objective import (
    FUSED_FAMILIES,
    accepts_logits_to_keep,
    fused_head,
    trained_nll_sum,
)
from tunesmith.methods.shared.token_nll import fused_linear_nll_sum, token_nll_sum
from tunesmith.testing.tiny import tiny_model

VOCAB = 96


def batches() -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """A padded batch (prompts and pads untrained) and a packed row of two samples."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    labels = ids.clone()
    labels[mask == 0] = IGNORE_INDEX
    labels[:, :3] = IGNORE_INDEX  # prompts
    packed_ids = torch.randint(4, VOCAB, (1, 14), generator=g)
    packed_labels = packed_ids.clone()
    packed_labels[0, [0, 1, 7, 8]] = IGNORE_INDEX  # each sample's first token and a prompt token
    positions = torch.tensor([list(range(7)) + list(range(7))])
    return [({"input_ids": ids, "attention_mask": mask}, labels),
            ({"input_ids": packed_ids, "position_ids": positions}, packed_labels)]


def loss_and_grads(model: torch.nn.Module, route: str, inputs: dict, labels: torch.Tensor):
    model.zero_grad()
    if route == "full":
        loss = token_nll_sum(model(**inputs, use_cache=False).logits, labels)[0]
    else:
        loss = trained_nll_sum(model, inputs, labels, positional=True)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", sorted(FUSED_FAMILIES))
@pytest.mark.parametrize("wrap", ["full", "lora"])
def test_fused_route_matches_full_logits(family: str, wrap: str) -> None:
    model = tiny_model(family, vocab_size=VOCAB, seed=0).float().eval()  # eval: gpt2 has dropout; grads still flow
    if family == "gemma2":
        assert model.config.final_logit_softcapping  # so the softcap branch is exercised
    if wrap == "lora":
        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
        for module in model.modules():  # B starts at zero; give the adapter something to say
            if hasattr(module, "lora_B"):
                torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
    assert fused_head(model) is not None, "the fused route must be the one under test"
    for inputs, labels in batches():
        fused, fused_grads = loss_and_grads(model, "fused", inputs, labels)
        full, full_grads = loss_and_grads(model, "full", inputs, labels)
        assert torch.allclose(fused, full, rtol=1e-5), (float(fused), float(full))
        assert fused_grads.keys() == full_grads.keys() and fused_grads
        for name, grad in full_grads.items():  # fp32 rounding: relative to the gradient's size
            assert (fused_grads[name] - grad).norm() <= 1e-5 * grad.norm() + 1e-8, name


def test_fused_route_under_bf16_autocast_stays_close_to_full_logits() -> None:
    model = tiny_model("llama", vocab_size=VOCAB, seed=0).train()
    inputs, labels = batches()[1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, _ = loss_and_grads(model, "fused", inputs, labels)
        full, _ = loss_and_grads(model, "full", inputs, labels)
    assert torch.allclose(fused, full, rtol=1e-2)


def test_fused_route_is_refused_where_it_would_be_wrong() -> None:
    model = tiny_model("llama", vocab_size=VOCAB, seed=0)
    head_adapted = get_peft_model(model, LoraConfig(r=4, target_modules=["lm_head", "q_proj"]))
    assert fused_head(head_adapted) is None  # an adapted head is not a plain linear layer
    assert accepts_logits_to_keep(head_adapted)  # but the sliced route still applies

    class DataParallelLike(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    assert fused_head(DataParallelLike(tiny_model("llama", vocab_size=VOCAB))) is None


def test_fused_nll_never_needs_the_whole_logit_matrix() -> None:
    """Chunks of 4 over 10 positions give the same sum and gradients as one chunk."""
    torch.manual_seed(0)
    hidden = torch.randn(10, 8, requires_grad=True)
    weight = torch.randn(30, 8, requires_grad=True)
    targets = torch.randint(0, 30, (10,))
    results = []
    for chunk in (4, 1024):
        hidden.grad = weight.grad = None
        loss = fused_linear_nll_sum(hidden, weight, targets, chunk_size=chunk)
        loss.backward()
        results.append((loss.detach(), hidden.grad.clone(), weight.grad.clone()))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_route_projects_only_the_trained_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The head sees one hidden state per trained token: 5 of 100 positions here, not the batch."""
    from tunesmith.methods.language_modeling import objective as lm_head

    rows = []
    real = lm_head.fused_linear_nll_sum

    def recording(hidden: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        rows.append(hidden.shape[0])
        return real(hidden, *args, **kwargs)

    monkeypatch.setattr(lm_head, "fused_linear_nll_sum", recording)
    model = tiny_model("llama", vocab_size=VOCAB, seed=0)
    ids = torch.randint(4, VOCAB, (2, 50))
    labels = torch.full((2, 50), IGNORE_INDEX)
    labels[1, 40:45] = ids[1, 40:45]
    with torch.no_grad():
        trained_nll_sum(model, {"input_ids": ids}, labels)
    assert rows == [5]
