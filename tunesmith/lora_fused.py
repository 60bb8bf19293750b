"""LoRA linear layers that keep only their input for backward: same math as PEFT, about half the activations.

PEFT computes `base(x) + B(A(dropout(x))) * scaling` with separate modules, so autograd keeps, per LoRA
layer, the dropout's float mask and the dropped copy of `x` that `A` was applied to: two tensors the size of
the input, for every one of q, k, v, o, gate, up and down. With LoRA dropout on, that was 407 of the 786 MiB
a 20M Llama micro-batch (4 packed rows of 512, fp32) kept for backward (`python -m bench.activation_memory`).

`LoraLinearFunction` does the same computation as one autograd node that saves the input itself (q, k and v
share one input, so it is kept once for all three), the rank-r product `A(dropout(x))` (tiny), and the seed
of its dropout mask; the backward draws the same mask again from that seed. The regularizer is unchanged:
every layer still draws its own independent mask per call, as PEFT's does. The seed comes from torch's
default generator, so checkpointed runs resume to the same masks, and activation checkpointing (which
restores the RNG state before recomputing) recomputes the same ones.

Layers the fused path does not cover run PEFT's own forward: quantized or non-Linear bases, DoRA and other
variants, several active adapters, merged or disabled adapters, trained base weights, extra forward
arguments, and anything run without gradients.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as PeftLoraLinear

SEED_RANGE = 2**62
LANE_VALUES = 2**16
LANE_MIN = -(2**15)


def dropout_noise(like: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The scaled keep-mask dropout multiplies by, `keep / (1 - p)`, drawn from `seed`, shaped and typed like `like`.

    Each element keeps with probability 1 - p, to 16 bits: the draws are 64-bit integers read as four 16-bit
    lanes. That is 2.5x faster on a CPU than `bernoulli_` (one generator call per element): a 4 x 512 x 384
    mask took 2.2 ms against 5.7 ms on 2 cores, and here each mask is drawn twice, in forward and backward.
    `p` is rounded to a multiple of 1/65536 (0.05 becomes 0.050003) and the scale uses the rounded value, so
    the expectation stays exactly `x`.
    """
    generator = torch.Generator(device=like.device)
    generator.manual_seed(seed)
    count = like.numel()
    draws = torch.randint(-2**63, 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, device=like.device,
                          generator=generator)
    dropped = round(p * LANE_VALUES)
    keep = draws.view(torch.int16)[:count].reshape(like.shape) >= LANE_MIN + dropped
    return keep.to(like.dtype).mul_(LANE_VALUES / (LANE_VALUES - dropped))


class LoraLinearFunction(torch.autograd.Function):
    """`x W^T + b + (dropout(x) A^T) B^T * scaling`, saving `x`, the rank-r product and the mask's seed."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_a: torch.Tensor,
                lora_b: torch.Tensor, scaling: float, p: float, seed: int) -> torch.Tensor:
        base = F.linear(x, weight, bias)
        lora_in = x.to(lora_a.dtype)  # PEFT casts the input to the adapter's dtype, after the base has seen it
        dropped = lora_in * dropout_noise(lora_in, p, seed) if p > 0 else lora_in
        low_rank = F.linear(dropped, lora_a)
        out = (base + F.linear(low_rank, lora_b) * scaling).to(base.dtype)
        ctx.save_for_backward(x, low_rank, weight, lora_a, lora_b)
        ctx.scaling, ctx.p, ctx.seed, ctx.base_dtype = scaling, p, seed, base.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, low_rank, weight, lora_a, lora_b = ctx.saved_tensors
        dtype = low_rank.dtype  # what the adapter computed in (the autocast dtype under autocast)
        grad = grad_out.to(dtype)
        lora_in = x.to(lora_a.dtype).to(dtype)
        noise = dropout_noise(x.to(lora_a.dtype), ctx.p, ctx.seed).to(dtype) if ctx.p > 0 else None
        grad_low_rank = (grad @ lora_b.to(dtype)) * ctx.scaling
        grad_a = grad_b = grad_x = None
        if ctx.needs_input_grad[3]:
            dropped = lora_in * noise if noise is not None else lora_in
            grad_a = _flat(grad_low_rank).t() @ _flat(dropped)
        if ctx.needs_input_grad[4]:
            grad_b = (_flat(grad) * ctx.scaling).t() @ _flat(low_rank)
        if ctx.needs_input_grad[0]:
            through_lora = grad_low_rank @ lora_a.to(dtype)
            if noise is not None:
                through_lora = through_lora * noise
            through_base = grad_out.to(ctx.base_dtype) @ weight.to(ctx.base_dtype)
            grad_x = through_base.to(x.dtype) + through_lora.to(x.dtype)
        return (grad_x, None, None, None if grad_a is None else grad_a.to(lora_a.dtype),
                None if grad_b is None else grad_b.to(lora_b.dtype), None, None, None)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(..., features) -> (tokens, features)."""
    return t.reshape(-1, t.shape[-1])


def _fused_forward(self: PeftLoraLinear, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """PEFT's `Linear.forward` through `LoraLinearFunction` where it applies, else PEFT's own forward."""
    names = self.active_adapters
    name = names[0] if len(names) == 1 else None
    if (args or kwargs or not torch.is_grad_enabled() or self.disable_adapters or self.merged or name is None
            or name not in self.lora_A or name in self.lora_variant or self.base_layer.weight.requires_grad
            or not getattr(self, "cast_input_dtype_enabled", True)):
        return PeftLoraLinear.forward(self, x, *args, **kwargs)
    dropout = self.lora_dropout[name]
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    seed = int(torch.randint(SEED_RANGE, (1,)).item()) if p > 0 else 0
    base = self.base_layer
    return LoraLinearFunction.apply(x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight,
                                    self.scaling[name], p, seed)


def fusable(module: torch.nn.Module) -> bool:
    """A PEFT LoRA layer on a plain `nn.Linear` with bias-free A and B: the layers the fused path covers."""
    if type(module) is not PeftLoraLinear or type(module.base_layer) is not torch.nn.Linear:
        return False
    return all(a.bias is None for a in module.lora_A.values()) and all(b.bias is None for b in module.lora_B.values())


def fuse_lora_layers(model: torch.nn.Module) -> int:
    """Route every fusable LoRA layer of `model` through `LoraLinearFunction`; returns how many."""
    count = 0
    for module in model.modules():
        if fusable(module):
            module.forward = MethodType(_fused_forward, module)
            count += 1
    return count


def fuse_for_run(model: torch.nn.Module, kernels: str, strategy: str) -> int:
    """Fuse the run's LoRA layers unless `model_options.kernels: none` asks for plain PEFT, or DeepSpeed shards
    the parameters (ZeRO gathers a module's weights in hooks around that module's own forward, which the
    fused layer does not call); returns how many layers were fused."""
    if kernels == "none" or strategy in ("zero2", "zero3"):
        return 0
    return fuse_lora_layers(model)
