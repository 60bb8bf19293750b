"""The fused SwiGLU MLP of LoRA layers against PEFT's modules and against numerical derivatives."""

from __future__ import annotations

import copy

import torch
from peft import LoraConfig, get_peft_model

from tests.test_lora_fused import loss_and_grads, saved_bytes
from tunesmith.speedups.lora_fused import LoraCall, fuse_lora_layers
from tunesmith.speedups.mlp_fused import SwiGluLoraFunction, fuse_mlps
from tunesmith.testing.tiny import tiny_model
from tunesmith.train.speedups import fuse_for_run


def peft_and_fused(dropout: float, fuse: str = "all") -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    plain = get_peft_model(tiny_model("llama", vocab_size=128),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=dropout, target_modules="all-linear"))
    for name, param in plain.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    fused = copy.deepcopy(plain)
    if fuse == "all":
        assert fuse_for_run(fused, "auto", "ddp") == {"fused_lora_layers": 14, "fused_mlps": 2}
    else:
        assert fuse_lora_layers(fused) == 14
    return plain, fused


def test_fused_mlp_equals_peft_without_dropout() -> None:
    plain, fused = peft_and_fused(0.0)
    ids = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(1))
    loss_a, grads_a = loss_and_grads(plain, ids)
    loss_b, grads_b = loss_and_grads(fused, ids)
    assert abs(loss_a - loss_b) <= 1e-6 * abs(loss_a) and grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_fused_mlp_backward_matches_finite_differences_with_dropout() -> None:
    torch.manual_seed(3)
    hidden, width, rank = 5, 7, 2

    def call(d_in: int, d_out: int, seed: int) -> LoraCall:
        return LoraCall(torch.randn(d_out, d_in, dtype=torch.float64), None,
                        torch.randn(rank, d_in, dtype=torch.float64, requires_grad=True),
                        torch.randn(d_out, rank, dtype=torch.float64, requires_grad=True), 1.5, 0.25, seed)

    calls = [call(hidden, width, 11), call(hidden, width, 12), call(width, hidden, 13)]
    x = torch.randn(2, 3, hidden, dtype=torch.float64, requires_grad=True)
    adapters = [t for c in calls for t in (c.lora_a, c.lora_b)]
    assert torch.autograd.gradcheck(lambda x, *ab: SwiGluLoraFunction.apply(x, *ab, *calls), (x, *adapters))


def test_fused_mlp_keeps_two_fewer_wide_tensors_per_layer() -> None:
    _, layers_only = peft_and_fused(0.05, fuse="layers")
    whole = copy.deepcopy(layers_only)
    assert fuse_mlps(whole) == 2
    ids = torch.randint(0, 128, (4, 64), generator=torch.Generator().manual_seed(4))
    config = whole.base_model.model.config
    # SiLU's input and output, and the product, give way to nothing: gate(x) and up(x) are kept either way
    freed = 2 * config.intermediate_size * 4 * ids.numel() * config.num_hidden_layers
    assert saved_bytes(layers_only, ids) - saved_bytes(whole, ids) >= 0.95 * freed
