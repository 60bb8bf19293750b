"""`adapter: ia3`: learned per-channel scales (IA3) on the outputs of the targeted layers, and on the inputs of
the FFN output projections."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tunesmith.adapters.unit import Adapter, MemoryTerms, Serving

if TYPE_CHECKING:
    import torch

    from tunesmith.plan.shape import ModelShape
    from tunesmith.recipe.spec import AdapterArgs


def _ia3_config(model: Any, args: AdapterArgs) -> Any:
    from peft import IA3Config

    return IA3Config(target_modules=args.target_modules,
                     feedforward_modules=ffn_output_pattern(model, args.target_modules), task_type="CAUSAL_LM")


def ffn_output_pattern(model: torch.nn.Module, targets: str | list[str]) -> str:
    """A regex of the FFN output projections among `targets`: IA3 scales their input, not their output.

    Found by shape, for any family: the MLP child that maps the intermediate width back to the hidden size
    (down_proj, dense_4h_to_h, mlp.c_proj, ...).
    """
    from tunesmith.adapters.bottleneck import decoder_layers, layer_blocks

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
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.nf
    return None


def _ia3_parameters(shape: ModelShape, r: int) -> int:
    """One scale per key/value channel and per FFN intermediate unit, in every layer."""
    return shape.layers * (2 * shape.kv_heads * shape.head_dim + shape.intermediate)


IA3 = Adapter(
    "ia3", "learned per-channel scales on the targeted layers' outputs and the FFN output projections' inputs",
    MemoryTerms(parameters=_ia3_parameters), Serving.OWN_MODEL, peft_config=_ia3_config,
    saved_as=lambda config: config.get("peft_type") == "IA3", reads_target_modules=True, merges=True,
    combine_refusal="IA3 learns per-channel scales that multiply activations, not weight updates that add up; "
    "PEFT averages such scales only linearly, none of the task-vector methods apply: merge each IA3 run into the "
    "base on its own instead",
    vllm_refusal="vLLM serves LoRA adapters only, not IA3",
)
