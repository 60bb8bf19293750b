"""The frozen reference policy that DPO, KTO, GRPO (beta > 0) and PPO measure the policy against, and the
forward call all alignment methods share.

With a PEFT adapter the reference is the same weights with the adapter disabled (`disable_adapter()`): no
second copy in memory, and before the first update policy and reference are the same function. Anything
else (full fine-tuning, our bottleneck adapter) gets a frozen deep copy taken when the objective is built,
before any update, so it is also right on resume (the loop rebuilds the objective from the base model).
Methods that can precompute reference log-probs (`precompute_ref`) skip the copy altogether.

Reference forwards run under the autocast the policy trains with (accelerate wraps only the prepared policy,
and precomputing runs before `prepare`), so that at step 0 the log-ratio is exactly 0, not a rounding gap.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from typing import Any

import torch
from peft import PeftModel

from tunesmith.train.accelerator import resolve_mixed_precision
from tunesmith.vision.collate import IMAGE_INPUTS

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def unwrap_ddp(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise); a PEFT model stays one,
    so its adapter can be switched off for the reference."""
    return getattr(model, "module", model)


class Reference:
    """Calls the reference policy: `reference(model, **inputs)` returns its outputs, without gradient."""

    def __init__(self, model: torch.nn.Module, mixed_precision: str = "no", keep_copy: bool = True) -> None:
        self.uses_adapter = isinstance(unwrap_ddp(model), PeftModel)
        self.copy: torch.nn.Module | None = None
        if not self.uses_adapter and keep_copy:
            self.copy = copy.deepcopy(unwrap_ddp(model)).eval().requires_grad_(False)
        self.autocast_dtype = _AUTOCAST.get(resolve_mixed_precision(mixed_precision))

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, **inputs: Any) -> Any:
        device = inputs["input_ids"].device
        autocast = (torch.autocast(device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                    else contextlib.nullcontext())
        if self.uses_adapter:
            with unwrap_ddp(model).disable_adapter(), autocast:
                return model(**inputs)
        # Without a copy the caller is precomputing: the policy has not been updated yet, so it is the reference.
        target = self.copy if self.copy is not None else model
        if self.copy is not None and next(self.copy.parameters()).device != device:
            self.copy.to(device)
        with autocast:
            return target(**inputs)


def forward(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    prefix: str = "",
    *,
    hidden: bool = False,
    reference: Reference | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (B, T, V) of the sequences `batch[prefix + "input_ids"]`, and their last hidden states (B, T, H)
    when `hidden`; through the reference policy when one is given.

    Reads `attention_mask` and, when present, `position_ids` and a vision-language model's pixel inputs
    (`IMAGE_INPUTS`) under the same prefix. Prompt-tuning adapters
    prepend virtual tokens to the outputs; only the positions of the real tokens are returned.
    """
    inputs = {name: batch[prefix + name] for name in ("input_ids", "attention_mask", "position_ids", *IMAGE_INPUTS)
              if prefix + name in batch}
    call = model if reference is None else functools.partial(reference, model)
    outputs = call(**inputs, use_cache=False, output_hidden_states=hidden)
    length = inputs["input_ids"].shape[1]
    states = outputs.hidden_states[-1][:, -length:] if hidden else None
    return outputs.logits[:, -length:], states
