"""LoRA linear layers that keep only their input for backward: same math as PEFT, about half the activations.

PEFT computes `base(x) + B(A(dropout(x))) * scaling` with separate modules, so autograd keeps, per LoRA
layer, the dropout's float mask and the dropped copy of `x` that `A` was applied to: two tensors the size of
the input, for every one of q, k, v, o, gate, up and down. With LoRA dropout on, those are about half of
what a micro-batch keeps for backward.

`LoraLinearFunction` does the same computation as one autograd node that saves the input itself (q, k and v
share one input, so it is kept once for all three), the rank-r product `A(dropout(x))` (tiny), and the
dropout's keep-mask as bool, a quarter of PEFT's float mask; keeping it was faster than drawing it again in
backward from its seed, at the same peak memory.
The regularizer is unchanged: every layer still draws its own independent mask per call, as PEFT's does. Masks are drawn from a seed taken from torch's default generator, so
checkpointed runs resume to the same masks, and activation checkpointing (which restores the RNG state
before recomputing) recomputes the same ones.

Layers the fused path does not cover run PEFT's own forward: quantized or non-Linear bases, DoRA and other
variants, several active adapters, merged or disabled adapters, trained base weights, extra forward
arguments, and anything run without gradients.

The measurements behind these choices are in bench/RESULTS.md ("Measurements behind the CPU speedups").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MethodType
from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as PeftLoraLinear

SEED_RANGE = 2**62
LANE_VALUES = 2**16
LANE_MIN = -(2**15)


def dropout_keep(like: torch.Tensor, p: float, seed: int) -> tuple[torch.Tensor, float]:
    """Dropout's keep-mask (bool, shaped like `like`) drawn from `seed`, and the scale kept values get, 1/(1 - p).

    Each element keeps with probability 1 - p, to 16 bits: the draws are 64-bit integers read as four 16-bit
    lanes, one generator call per four elements where `bernoulli_` makes one per element (faster on a CPU;
    see bench/RESULTS.md).
    `p` is rounded to a multiple of 1/65536 (0.05 becomes 0.050003) and the scale uses the rounded value, so
    the expectation stays exactly `x`.
    """
    generator = torch.Generator(device=like.device)
    generator.manual_seed(seed)
    count = like.numel()
    draws = torch.randint(-2**63, 2**63 - 1, ((count + 3) // 4,), dtype=torch.int64, device=like.device,
                          generator=generator)
    keep = draws.view(torch.int16)[:count].reshape(like.shape) >= LANE_MIN + round(p * LANE_VALUES)
    return keep, keep_scale(p)


def keep_scale(p: float) -> float:
    """1 / (1 - p) for `p` rounded to the 1/65536 steps `dropout_keep` draws in."""
    return LANE_VALUES / (LANE_VALUES - round(p * LANE_VALUES))


def dropout_noise(like: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The scaled keep-mask `keep / (1 - p)` that torch's dropout multiplies by, typed like `like`."""
    keep, scale = dropout_keep(like, p, seed)
    return keep.to(like.dtype).mul_(scale)


@dataclass(frozen=True)
class LoraCall:
    """One LoRA layer's call: frozen base weight and bias, adapter weights, scaling, dropout rate and mask seed."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    lora_a: torch.Tensor
    lora_b: torch.Tensor
    scaling: float
    p: float
    seed: int


def lora_forward(x: torch.Tensor, call: LoraCall) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """PEFT's `base(x) + B(A(dropout(x))) * scaling`, and what backward needs: the rank-r product `A(dropout(x))`
    and the dropout's keep-mask (bool: a quarter of the float mask PEFT keeps; None without dropout).

    Dropout's 1/(1 - p) is applied to the rank-r product, not the wide input, and the low-rank term is added
    inside the GEMM (`addmm`), so no float mask and no scaled copy of the input is ever made.
    """
    base = F.linear(x, call.weight, call.bias)
    lora_in = x.to(call.lora_a.dtype)  # PEFT casts the input to the adapter's dtype, after the base has seen it
    keep = None
    if call.p > 0:
        keep, scale = dropout_keep(lora_in, call.p, call.seed)
        low_rank = F.linear(_dropped(lora_in, keep), call.lora_a).mul_(scale)
    else:
        low_rank = F.linear(lora_in, call.lora_a)
    if base.dtype == low_rank.dtype and (torch.is_autocast_enabled(x.device.type) or call.lora_b.dtype == base.dtype):
        # in place on the fresh base output: no second output-sized tensor
        out = _flat(base).addmm_(_flat(low_rank), call.lora_b.to(base.dtype).t(), alpha=call.scaling).view(base.shape)
    else:  # e.g. a bf16 base under an fp32 adapter without autocast: PEFT's mixed-dtype sum
        out = base + F.linear(low_rank, call.lora_b) * call.scaling
    return out.to(base.dtype), low_rank, keep


def lora_backward(grad_out: torch.Tensor, x: torch.Tensor, low_rank: torch.Tensor, keep: torch.Tensor | None,
                  call: LoraCall, need_x: bool = True) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of `lora_forward` for x (None unless `need_x`), A and B, under the forward's keep-mask."""
    dtype = low_rank.dtype  # what the adapter computed in (the autocast dtype under autocast)
    grad = grad_out.to(dtype)
    lora_in = x.to(call.lora_a.dtype).to(dtype)
    scale = keep_scale(call.p) if keep is not None else 1.0
    grad_low_rank = (grad @ call.lora_b.to(dtype)).mul_(call.scaling * scale)  # dropout's scale, on r columns
    grad_a = (_flat(grad_low_rank).t() @ _flat(_dropped(lora_in, keep))).to(call.lora_a.dtype)
    grad_b = (_flat(grad).t() @ _flat(low_rank * call.scaling)).to(call.lora_b.dtype)  # scaled on r columns
    if not need_x:
        return None, grad_a, grad_b
    base_dtype = grad_out.dtype  # the forward returned the base's dtype
    through_lora = _dropped(grad_low_rank @ call.lora_a.to(dtype), keep).to(base_dtype)
    grad_x = _flat(through_lora).addmm_(_flat(grad_out), call.weight.to(base_dtype))  # in place on a fresh tensor
    return grad_x.view(x.shape).to(x.dtype), grad_a, grad_b


class LoraLinearFunction(torch.autograd.Function):
    """`lora_forward` as one autograd node, saving `x`, the rank-r product and the bool keep-mask."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, call: LoraCall) -> torch.Tensor:
        out, low_rank, keep = lora_forward(x, call)
        ctx.save_for_backward(x, low_rank, keep)
        ctx.call = call
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, low_rank, keep = ctx.saved_tensors
        return (*lora_backward(grad_out, x, low_rank, keep, ctx.call, need_x=ctx.needs_input_grad[0]), None)


def _dropped(t: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """`t` with dropout's zeros where `keep` is False (unscaled). `where` reads the bool mask as it is; `t * keep`
    would first make a float copy of the mask, and is slower (bench/RESULTS.md)."""
    return t if keep is None else torch.where(keep, t, 0.0)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(..., features) -> (tokens, features)."""
    return t.reshape(-1, t.shape[-1])


def lora_call(layer: PeftLoraLinear, args: tuple = (), kwargs: dict | None = None) -> LoraCall | None:
    """The call a fused path makes for `layer` now, or None where PEFT's own forward must run: extra forward
    arguments, no gradients, disabled or merged adapters, several active adapters, a variant (DoRA), a trained
    base weight, or input casting switched off."""
    names = layer.active_adapters
    name = names[0] if len(names) == 1 else None
    if (args or kwargs or not torch.is_grad_enabled() or layer.disable_adapters or layer.merged or name is None
            or name not in layer.lora_A or name in layer.lora_variant or layer.base_layer.weight.requires_grad
            or not getattr(layer, "cast_input_dtype_enabled", True)):
        return None
    dropout = layer.lora_dropout[name]
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    seed = int(torch.randint(SEED_RANGE, (1,)).item()) if p > 0 else 0
    return LoraCall(layer.base_layer.weight, layer.base_layer.bias, layer.lora_A[name].weight,
                    layer.lora_B[name].weight, layer.scaling[name], p, seed)


def _fused_forward(self: PeftLoraLinear, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """PEFT's `Linear.forward` through `LoraLinearFunction` where it applies, else PEFT's own forward."""
    call = lora_call(self, args, kwargs)
    if call is None:
        return PeftLoraLinear.forward(self, x, *args, **kwargs)
    return LoraLinearFunction.apply(x, call.lora_a, call.lora_b, call)


def fusable(module: torch.nn.Module) -> bool:
    """A PEFT LoRA layer on a plain `nn.Linear` with bias-free A and B: the layers the fused path covers."""
    if type(module) is not PeftLoraLinear or type(module.base_layer) is not torch.nn.Linear:
        return False
    return all(a.bias is None for a in module.lora_A.values()) and all(b.bias is None for b in module.lora_B.values())


def route_forward(model: torch.nn.Module, matches: Callable[[torch.nn.Module], bool],
                  forward: Callable[..., torch.Tensor]) -> int:
    """Bind `forward` as the forward of every module of `model` that `matches`; returns how many."""
    chosen = [module for module in model.modules() if matches(module)]
    for module in chosen:
        module.forward = MethodType(forward, module)
    return len(chosen)


def fuse_lora_layers(model: torch.nn.Module) -> int:
    """Route every fusable LoRA layer of `model` through `LoraLinearFunction`; returns how many."""
    return route_forward(model, fusable, _fused_forward)

