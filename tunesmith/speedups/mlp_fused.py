"""A LoRA-wrapped SwiGLU MLP as one autograd node: it keeps its input and the two projections, nothing else.

`down(silu(gate(x)) * up(x))`, run module by module, keeps for backward: `gate(x)` (for SiLU), `silu(gate(x))`
and `up(x)` (for the product), and the product itself (the input `down`'s LoRA needs): four tensors of the MLP's
width per token and layer, about half of what a micro-batch keeps once the LoRA layers are fused (figures in
bench/RESULTS.md). This node keeps `x`, `gate(x)` and `up(x)`, and recomputes the SiLU and the product in
backward: two elementwise passes against two fewer wide tensors per layer.

It covers MLPs with `gate_proj`, `up_proj`, `down_proj` that are fusable LoRA layers (speedups/lora_fused.py) and a SiLU
activation (Llama, Mistral, Qwen2 and others alike); at call time each layer must also pass `lora_call`'s
checks, else the MLP runs its own forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.activations import SiLUActivation

from tunesmith.speedups.lora_fused import fusable, lora_backward, lora_call, lora_forward, route_forward

SILU_TYPES = (torch.nn.SiLU, SiLUActivation)


class SwiGluLoraFunction(torch.autograd.Function):
    """`down(silu(gate(x)) * up(x))` through three LoRA calls, keeping x, gate(x), up(x) and the rank-r products."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, *adapters_and_calls: Any) -> torch.Tensor:
        gate_call, up_call, down_call = adapters_and_calls[6:]
        gate, gate_low, gate_keep = lora_forward(x, gate_call)
        up, up_low, up_keep = lora_forward(x, up_call)
        out, down_low, down_keep = lora_forward(F.silu(gate).mul_(up), down_call)
        ctx.save_for_backward(x, gate, up, gate_low, up_low, down_low, gate_keep, up_keep, down_keep)
        ctx.calls = (gate_call, up_call, down_call)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, gate, up, gate_low, up_low, down_low, gate_keep, up_keep, down_keep = ctx.saved_tensors
        gate_call, up_call, down_call = ctx.calls
        activated = F.silu(gate)
        grad_product, down_a, down_b = lora_backward(grad_out, activated * up, down_low, down_keep, down_call)
        grad_gate = torch.ops.aten.silu_backward(grad_product * up, gate)  # one pass for SiLU's derivative
        grad_up = grad_product.mul_(activated)  # grad_product is ours and no longer needed
        need_x = ctx.needs_input_grad[0]
        grad_x_gate, gate_a, gate_b = lora_backward(grad_gate, x, gate_low, gate_keep, gate_call, need_x)
        grad_x_up, up_a, up_b = lora_backward(grad_up, x, up_low, up_keep, up_call, need_x)
        grad_x = grad_x_gate.add_(grad_x_up) if need_x else None
        return grad_x, gate_a, gate_b, up_a, up_b, down_a, down_b, None, None, None


def _fused_mlp_forward(self: torch.nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The MLP through `SwiGluLoraFunction` when all three layers can take the fused path, else its own forward."""
    calls = [lora_call(layer) for layer in (self.gate_proj, self.up_proj, self.down_proj)]
    if args or kwargs or any(call is None for call in calls):
        return type(self).forward(self, x, *args, **kwargs)
    adapters = [t for call in calls for t in (call.lora_a, call.lora_b)]
    return SwiGluLoraFunction.apply(x, *adapters, *calls)


def fusable_mlp(module: torch.nn.Module) -> bool:
    """A SwiGLU MLP whose three projections are fusable LoRA layers."""
    layers = [getattr(module, name, None) for name in ("gate_proj", "up_proj", "down_proj")]
    return (all(layer is not None and fusable(layer) for layer in layers)
            and isinstance(getattr(module, "act_fn", None), SILU_TYPES))


def fuse_mlps(model: torch.nn.Module) -> int:
    """Route every fusable MLP of `model` through `SwiGluLoraFunction`; returns how many."""
    return route_forward(model, fusable_mlp, _fused_mlp_forward)
