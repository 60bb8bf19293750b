"""Adapter specs -> PEFT configs; apply them to a base model, and put a trained adapter back on a fresh base.

Every `adapter:` value of a recipe lands here. `full` trains every weight; `bottleneck` is our own module
(adapters/bottleneck.py: PEFT has none); every other method goes through PEFT, so the saved adapter is the standard
PEFT folder that `PeftModel.from_pretrained` (and, for LoRA, vLLM) loads:

    lora        low-rank updates on `target_modules`
    qlora       LoRA on a frozen 4-bit NF4 base (double quantization); the caller loads the base with
                quantization="nf4", compute in the recipe's dtype
    dora        LoRA with a learned per-output magnitude (weight-decomposed)
    ia3         learned per-channel scales (IA3): outputs of the targeted layers, inputs of the FFN output
                projections
    prefix      learned key/value prefixes in every layer (`virtual_tokens` long)
    prompt      learned input embeddings prepended to the prompt (`virtual_tokens` long)
    bottleneck  Houlsby adapter layers after attention and MLP (`bottleneck_size` wide)

Prefix and prompt tuning start from real tokens (their keys/values, their embeddings), not from noise. They
need unpacked batches: packed rows cannot isolate their samples once virtual tokens are in play (measured in
tests/test_adapters.py), so the recipe turns packing off for them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from peft import (
    IA3Config,
    LoraConfig,
    PeftConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptTuningConfig,
    PromptTuningInit,
    get_peft_model,
    prepare_model_for_kbit_training,
)
from transformers.pytorch_utils import Conv1D

from tunesmith.adapters.bottleneck import CONFIG_FILE as BOTTLENECK_CONFIG
from tunesmith.adapters.bottleneck import add_bottleneck, decoder_layers, layer_blocks, load_bottleneck
from tunesmith.errors import UserError
from tunesmith.recipe.registry import ADAPTERS, LORA_FAMILY
from tunesmith.recipe.spec import AdapterArgs

MERGEABLE: tuple[str, ...] = ("lora", "qlora", "dora", "ia3")
"""Methods whose update is linear in the base weights, so `merge` can fold it in."""


def apply_adapter(model: torch.nn.Module, adapter: str, args: AdapterArgs) -> torch.nn.Module:
    """Wrap `model` for training with `adapter`; the base weights stay frozen for every method but `full`."""
    if adapter not in ADAPTERS:
        raise UserError(f"adapter: '{adapter}' is unknown; use one of: {', '.join(ADAPTERS)}")
    if adapter == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    if adapter == "bottleneck":
        return add_bottleneck(model, args.bottleneck_size, args.dropout)
    if adapter == "qlora":
        if not getattr(model, "is_loaded_in_4bit", False):
            raise ValueError("adapter: qlora needs the base loaded with load_model(..., quantization='nf4')")
        # Norms and embeddings to fp32 for stable training; activation checkpointing stays the recipe's choice.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    peft_model = get_peft_model(model, peft_config(model, adapter, args))
    if adapter == "prefix":
        _init_prefix_from_tokens(peft_model)
    if adapter == "prompt":
        _align_logits_to_inputs(peft_model)
    return peft_model


def peft_config(model: torch.nn.Module, adapter: str, args: AdapterArgs) -> PeftConfig:
    """The PEFT config for `adapter` with the recipe's knobs."""
    if adapter in LORA_FAMILY:
        return LoraConfig(
            r=args.r, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=args.target_modules,
            use_dora=adapter == "dora", task_type="CAUSAL_LM",
        )
    if adapter == "ia3":
        return IA3Config(
            target_modules=args.target_modules, feedforward_modules=_ffn_output_pattern(model, args.target_modules),
            task_type="CAUSAL_LM",
        )
    if adapter == "prefix":
        return PrefixTuningConfig(num_virtual_tokens=args.virtual_tokens, task_type="CAUSAL_LM")
    if adapter == "prompt":
        # Start from embeddings of random vocabulary tokens: the model's own scale, unlike N(0, 1).
        return PromptTuningConfig(
            num_virtual_tokens=args.virtual_tokens, prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
            task_type="CAUSAL_LM",
        )
    raise ValueError(f"adapter '{adapter}' has no PEFT config")


def load_adapter(model: torch.nn.Module, adapter_dir: str | Path) -> torch.nn.Module:
    """Put a run's trained adapter (its `adapter/` folder) on a freshly loaded base `model`, for inference.

    The one way back from disk for every method: PEFT folders through `PeftModel.from_pretrained`,
    bottleneck folders through `load_bottleneck`; prompt-tuned models get the same logit alignment as in
    training, so their logits line up with the input tokens.
    """
    folder = Path(adapter_dir)
    if (folder / BOTTLENECK_CONFIG).is_file():
        return load_bottleneck(model, folder)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise UserError(f"{folder} holds no adapter (no adapter_config.json or {BOTTLENECK_CONFIG})")
    peft_model = PeftModel.from_pretrained(model, str(folder))
    if json.loads(config_file.read_text()).get("peft_type") == "PROMPT_TUNING":
        _align_logits_to_inputs(peft_model)
    return peft_model.eval()


@torch.no_grad()
def _init_prefix_from_tokens(model: PeftModel) -> None:
    """Start prefix tuning from the keys and values that real tokens produce (Li & Liang, 2021), not N(0, 1).

    PEFT's random prefix is far from any key/value the model has seen: on stories260k it raised held-out loss
    from 4.29 to 6.74 before the first step, and 30 steps brought it back only to 5.57, worse than no adapter.
    The keys/values the frozen model computes for `virtual_tokens` random vocabulary tokens start where the
    model reads ordinary text: at step 0 the adapted model equals the base reading those tokens first.
    """
    config = model.active_peft_config
    base = model.get_base_model()
    embedding = model.prompt_encoder[model.active_adapter].embedding
    ids = torch.randint(base.get_input_embeddings().num_embeddings, (1, config.num_virtual_tokens),
                        device=embedding.weight.device)
    was_training = base.training
    base.eval()
    cache = base(input_ids=ids, use_cache=True).cache
    base.train(was_training)
    # PEFT's layout of one virtual token's row: [keys of layer 0, values of layer 0, keys of layer 1, ...],
    # each (kv_heads * head_dim) wide; the cache holds (1, kv_heads, tokens, head_dim) per layer.
    per_layer = [s[0].transpose(0, 1).flatten(1) for layer in cache.layers for s in (layer.keys, layer.values)]
    embedding.weight.copy_(torch.cat(per_layer, dim=1))


def _ffn_output_pattern(model: torch.nn.Module, targets: str | list[str]) -> str:
    """A regex of the FFN output projections among `targets`: IA3 scales their input, not their output.

    Found by shape, for any family: the MLP child that maps the intermediate width back to the hidden size
    (down_proj, dense_4h_to_h, mlp.c_proj, ...).
    """
    hidden = model.config.get_text_config().hidden_size
    names = {module: name for name, module in model.named_modules()}
    found = []
    for layer in decoder_layers(model):
        mlp = layer_blocks(layer)[1]
        for child in mlp.children():
            width = _io_width(child)
            if width is not None and width[1] == hidden and width[0] != hidden:
                found.append(names[child])
    if isinstance(targets, list):
        found = [n for n in found if any(n == t or n.endswith(f".{t}") for t in targets)]
    return "|".join(re.escape(n) for n in found) or "(?!)"


def _io_width(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in, out) features of a linear layer (GPT-2's Conv1D included), else None."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.nf
    return None


def _align_logits_to_inputs(model: torch.nn.Module) -> None:
    """Drop the logits of prompt tuning's virtual tokens, so logits line up with input tokens as for any model.

    PEFT prepends the virtual tokens to the inputs and returns their logits too (length virtual + input);
    every loss here pairs logits with the batch's labels position by position.
    """

    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        inputs = kwargs.get("input_ids", args[0] if args else None)
        if inputs is None:
            inputs = kwargs["inputs_embeds"]
        length = inputs.shape[1]
        if output.logits is not None and output.logits.shape[1] > length:
            output.logits = output.logits[:, -length:]
        return output

    model.register_forward_hook(hook, with_kwargs=True)
