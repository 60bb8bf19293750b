"""Model FLOPs of a training step, counted the same way for every system the throughput bench compares.

Why count ourselves: model FLOPs utilization (MFU) divides the work a step *needs* by the time it took, so
the count must not depend on how a system does the work. Per real (non-pad) token, with N_body the weights
of the body's linear layers, N_head the output projection, N_lora the LoRA weights:

* full fine-tuning: 6 FLOPs per weight (2 forward, 2 for the input gradient, 2 for the weight gradient);
* LoRA: 4 per frozen weight (no weight gradient) + 6 per LoRA weight;
* the head is counted only at trained positions, because only those logits enter the loss: a system that
  projects every position does more work than the step needs, and that extra is not credited;
* causal attention: 6 * layers * attention width * n^2 per sample of n tokens (QK^T and AV are each
  n^2/2 * width multiply-adds forward, and the backward costs twice the forward). Samples in a packed row
  attend only to themselves, so n is the sample's length, not the row's.

Padding is never counted: it is work, not model FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForCausalLM


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs to know about a model; built once from its config."""

    body_linear: int  # weights of every nn.Linear except the output head
    head: int  # weights of the output head
    lora: int  # LoRA weights for rank `rank` on every body linear layer (PEFT's all-linear)
    layers: int
    attention_width: int  # heads * head_dim
    total: int  # all parameters, embeddings included

    def flops(self, adapter: str, real_tokens: int, trained_tokens: int, squared_lengths: int) -> float:
        """Model FLOPs of steps that computed `real_tokens`, trained `trained_tokens`, with sum of n^2."""
        per_weight = 6 if adapter == "full" else 4
        dense = per_weight * (self.body_linear * real_tokens + self.head * trained_tokens)
        lora = 6 * self.lora * real_tokens if adapter != "full" else 0
        attention = 6 * self.layers * self.attention_width * squared_lengths
        return float(dense + lora + attention)


def model_shape(model_dir: str, rank: int) -> ModelShape:
    """Count the weights of the model saved in `model_dir` (random init from its config; no weights read)."""
    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    body, lora = 0, 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            body += module.weight.numel()
            lora += rank * (module.in_features + module.out_features)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(body_linear=body, head=head.weight.numel(), lora=lora, layers=config.num_hidden_layers,
                      attention_width=heads * head_dim, total=sum(p.numel() for p in model.parameters()))
