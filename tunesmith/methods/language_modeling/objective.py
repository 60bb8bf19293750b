"""SFT and continued pre-training: next-token cross-entropy on the trained tokens (responses, or all text).

The loss reaches the model's output head by the cheapest route the model allows (`trained_nll_sum`):

1. Fused: run the decoder, take the final hidden states at trained positions only, and compute the head
   and the cross-entropy chunk by chunk (`methods/shared/token_nll.fused_linear_nll_sum`): no (tokens x
   vocabulary) logits are ever held. Only for families whose forward is exactly `decoder -> linear head
   (-> softcap)`, a plain `nn.Linear` head (not one wrapped by an adapter), and no wrapper that hooks the
   forward (DDP, FSDP), since the decoder is called directly.
2. Sliced: `model(..., logits_to_keep=mask)`: transformers computes logits at trained positions only.
3. Full logits, for models whose forward takes neither.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator

from tunesmith.data.pipeline import PreparedData
from tunesmith.methods.language_modeling import FUSED_FAMILIES
from tunesmith.methods.shared.token_nll import (
    count_trained_tokens,
    fused_linear_nll_sum,
    kept_nll_sum,
    predicting_positions,
    token_nll_sum,
    trained_targets,
)
from tunesmith.recipe.spec import Recipe
from tunesmith.speedups.kernels import needs_flat_batches
from tunesmith.train.batches import BatchPlan, plan_batches
from tunesmith.train.objective import Batch
from tunesmith.train.stream_plan import StreamPlan
from tunesmith.train.unwrap import unwrap_to_transformers
from tunesmith.vision.families import is_vision_config


class LanguageModeling:
    """The objective of `method: sft` and `method: cpt`: token-mean NLL, normalised over the whole step."""

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        """Under flash attention, packed micro-batches are one flat row each (data/packing.py says why)."""
        t, pad_id, flat = recipe.train, tokenizer.pad_token_id, needs_flat_batches(model)
        self.slice_logits = not recipe.adapter_kind.prompt_learning  # virtual tokens shift positions: full logits
        self.plan: BatchPlan | StreamPlan
        if data.stream is not None:  # data.streaming: steps taken from the stream in order (max_steps is required)
            self.plan = StreamPlan(data.stream, steps=t.max_steps or 0, batch_size=t.batch_size, accum=t.grad_accum,
                                   pad_id=pad_id, flat=flat)
        else:
            self.plan = plan_batches(
                data.train, batch_size=t.batch_size, accum=t.grad_accum, epochs=t.epochs, max_steps=t.max_steps,
                max_seq_len=t.max_seq_len, packing=t.packing, pad_id=pad_id, seed=t.seed, shuffle=t.shuffle, flat=flat,
            )
        self.eval_plan: BatchPlan | None = None
        if data.eval:
            self.eval_plan = plan_batches(
                data.eval, batch_size=t.batch_size, accum=1, epochs=1, max_steps=None, max_seq_len=t.max_seq_len,
                packing=t.packing, pad_id=pad_id, seed=0, flat=flat,
            )

    @property
    def steps(self) -> int:
        return self.plan.steps

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return self.plan.step_batches(step)

    def units(self, batch: Batch) -> int:
        return count_trained_tokens(batch["labels"])

    def real_tokens(self, step: int) -> int:
        return self.plan.real_tokens(step)

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Summed NLL of the trained tokens, by the cheapest route the model allows (module docstring)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return trained_nll_sum(model, inputs, batch["labels"], positional=self.slice_logits), {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        """Mean NLL per trained token over the eval set (not a mean of batch means)."""
        if self.eval_plan is None:
            return {}
        was_training = model.training
        model.eval()
        nll = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        count = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        for step in range(self.eval_plan.steps):
            for batch in self.eval_plan.step_batches(step):
                batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                nll_sum, _ = self.loss_sum(model, batch)
                nll += nll_sum.double()
                count += self.units(batch)
        nll, count = accelerator.reduce(nll, "sum"), accelerator.reduce(count, "sum")
        model.train(was_training)
        loss = float(nll / count.clamp(min=1))
        return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}


def sft_objective(recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> Any:
    """`method: sft`'s objective: LanguageModeling, or for a vision-language model the image-chat objective
    (vision/objective.py: batches from the model's processor)."""
    if is_vision_config(getattr(unwrap_to_transformers(model), "config", None)):
        from tunesmith.vision.objective import VisionLanguageModeling

        return VisionLanguageModeling(recipe, data, tokenizer, model)
    return LanguageModeling(recipe, data, tokenizer, model)


@dataclass
class FusedHead:
    decoder: torch.nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    softcap: float | None


def trained_nll_sum(model: torch.nn.Module, inputs: dict[str, torch.Tensor], labels: torch.Tensor,
                    positional: bool = True) -> torch.Tensor:
    """Summed NLL (fp32, with grad) of the trained tokens of `labels`, by the cheapest route `model` allows.

    `positional=False` forces full logits: with prompt-learning adapters the model's positions are not
    the batch's (virtual tokens come first), so per-position selection would pick the wrong states.
    """
    head = fused_head(model) if positional else None
    if head is not None:
        hidden = head.decoder(**inputs, use_cache=False).last_hidden_state  # (B, T, H)
        trained_hidden = hidden[predicting_positions(labels)]  # (N, H)
        return fused_linear_nll_sum(trained_hidden, head.weight, trained_targets(labels), head.bias, head.softcap)
    if positional and accepts_logits_to_keep(model):
        logits = model(**inputs, use_cache=False, logits_to_keep=predicting_positions(labels)).logits
        return kept_nll_sum(logits, labels)[0]
    return token_nll_sum(model(**inputs, use_cache=False).logits, labels)[0]


def fused_head(model: torch.nn.Module) -> FusedHead | None:
    """The decoder and head to compute the loss with directly, or None where that is not safe."""
    if hasattr(model, "module") or hasattr(model, "unshard"):
        return None  # DDP/FSDP(2) synchronise or gather through their own forward; it must not be bypassed
    inner = unwrap_to_transformers(model)
    config = getattr(inner, "config", None)
    if config is None or config.model_type not in FUSED_FAMILIES:
        return None
    head = inner.get_output_embeddings()
    if type(head) is not torch.nn.Linear:
        return None
    return FusedHead(inner.get_decoder(), head.weight, head.bias, getattr(config, "final_logit_softcapping", None))


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the causal LM under any wrappers takes `logits_to_keep` in its forward (transformers 5.x
    causal LMs do; remote-code models may not, and then the full logits are used)."""
    return "logits_to_keep" in inspect.signature(unwrap_to_transformers(model).forward).parameters
