"""The fused LoRA layer against PEFT's own modules and against numerical derivatives.

PEFT is the reference: with the same weights and no dropout, loss and every gradient must match; with
dropout, the forward must equal PEFT's formula under the same mask, and the backward must match finite
differences of that forward (the mask is drawn again in backward, so a wrong redraw shows here).
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from tunesmith.speedups.lora_fused import LoraCall, LoraLinearFunction, dropout_noise, fuse_lora_layers
from tunesmith.testing.tiny import tiny_model
from tunesmith.train.speedups import fuse_for_run


def lora_pair(dropout: float = 0.0, use_dora: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two identical LoRA models of a random 2-layer Llama (B non-zero so the adapter matters); the second fused."""
    torch.manual_seed(0)
    base = tiny_model("llama", vocab_size=128)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear", use_dora=use_dora)
    plain = get_peft_model(copy.deepcopy(base), config)
    for name, param in plain.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    fused = copy.deepcopy(plain)
    assert fuse_lora_layers(fused) == 14  # q, k, v, o, gate, up, down in each of 2 layers
    return plain, fused


def loss_and_grads(model: torch.nn.Module, ids: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_lora_equals_peft_without_dropout() -> None:
    plain, fused = lora_pair()
    ids = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(1))
    loss_a, grads_a = loss_and_grads(plain, ids)
    loss_b, grads_b = loss_and_grads(fused, ids)
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 28
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_forward_is_peft_formula_under_the_same_mask() -> None:
    torch.manual_seed(2)
    x, w, b = torch.randn(3, 5, 12), torch.randn(10, 12), torch.randn(10)
    a, bb = torch.randn(4, 12), torch.randn(10, 4)
    out = LoraLinearFunction.apply(x, a, bb, LoraCall(w, b, a, bb, 0.5, 0.3, 1234))
    expected = x @ w.t() + b + ((x * dropout_noise(x, 0.3, 1234)) @ a.t()) @ bb.t() * 0.5
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_fused_backward_matches_finite_differences(p: float) -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 6, dtype=torch.float64)
    a = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, b: LoraLinearFunction.apply(x, a, b, LoraCall(w, None, a, b, 2.0, p, 99)),
                                    (x, a, b))


def test_dropout_noise_keeps_one_minus_p_and_is_unbiased() -> None:
    like = torch.ones(400_000)
    noise = dropout_noise(like, 0.1, seed=5)
    kept = (noise > 0).float().mean().item()
    assert abs(kept - 0.9) < 5 * (0.9 * 0.1 / like.numel()) ** 0.5  # five binomial standard deviations
    values = noise.unique().tolist()
    assert values[0] == 0.0 and values[1:] == [pytest.approx(65536 / (65536 - round(0.1 * 65536)))]
    assert noise.mean().item() == pytest.approx(1.0, abs=0.005)
    assert torch.equal(noise, dropout_noise(like, 0.1, seed=5))
    assert not torch.equal(noise, dropout_noise(like, 0.1, seed=6))


def saved_bytes(model: torch.nn.Module, ids: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter tensors autograd keeps for backward in one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in params:
            storages[key] = t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    return sum(storages.values())


def test_fused_lora_keeps_far_less_for_backward_with_dropout() -> None:
    plain, fused = lora_pair(dropout=0.05)
    ids = torch.randint(0, 128, (4, 64), generator=torch.Generator().manual_seed(4))
    config = plain.base_model.model.config
    hidden, mlp = config.hidden_size, config.intermediate_size
    # per token and layer PEFT keeps a float mask and a dropped copy of each of the 7 inputs (6 of width hidden,
    # down's of width mlp); the fused layers keep the 4 distinct inputs themselves (q/k/v share one, gate/up one)
    # and a bool mask (1 byte a value) per input
    inputs = 6 * hidden + mlp
    freed = ((2 * inputs - (3 * hidden + mlp)) * 4 - inputs) * ids.numel() * config.num_hidden_layers
    assert saved_bytes(plain, ids) - saved_bytes(fused, ids) >= 0.9 * freed


def test_checkpointing_recomputes_the_same_masks() -> None:
    _, fused = lora_pair(dropout=0.2)
    ids = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(7)
    loss_a, grads_a = loss_and_grads(fused, ids)
    fused.base_model.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    fused.base_model.model.enable_input_require_grads()
    torch.manual_seed(7)
    loss_b, grads_b = loss_and_grads(fused, ids)
    assert loss_a == loss_b
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-5, atol=1e-7, msg=name)


def test_bf16_autocast_stays_close_to_peft() -> None:
    plain, fused = lora_pair()
    ids = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_a, grads_a = loss_and_grads(plain, ids)
        loss_b, grads_b = loss_and_grads(fused, ids)
    assert loss_a == pytest.approx(loss_b, rel=1e-2)
    for name in grads_a:
        assert grads_b[name].dtype == grads_a[name].dtype == torch.float32
        scale = grads_a[name].abs().max().item()
        assert (grads_b[name] - grads_a[name]).abs().max().item() <= 0.05 * scale + 1e-6, name


def test_layers_outside_the_fused_path_run_peft() -> None:
    plain, fused = lora_pair(use_dora=True)  # DoRA is a PEFT variant: the fused layer hands it back to PEFT
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(8))
    loss_a, grads_a = loss_and_grads(plain, ids)
    loss_b, grads_b = loss_and_grads(fused, ids)
    assert loss_a == loss_b and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)
    plain.eval(), fused.eval()
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, fused(input_ids=ids).logits)


def test_fusion_is_off_for_kernels_none_and_zero() -> None:
    plain, _ = lora_pair()
    assert fuse_for_run(copy.deepcopy(plain), "none", "ddp") == {"fused_lora_layers": 0, "fused_mlps": 0}
    assert fuse_for_run(copy.deepcopy(plain), "auto", "zero3") == {"fused_lora_layers": 0, "fused_mlps": 0}
    assert fuse_for_run(copy.deepcopy(plain), "auto", "fsdp2") == {"fused_lora_layers": 14, "fused_mlps": 2}
