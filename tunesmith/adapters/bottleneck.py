"""Bottleneck adapter layers (Houlsby et al., 2019), our own: PEFT has no classic bottleneck adapter and the
AdapterHub `adapters` package would downgrade transformers.

Each decoder layer gets two adapters, one on the output of its attention block and one on the output of its
MLP block, before the layer adds them to the residual stream:

    h -> h + up(dropout(gelu(down(h))))        down: hidden -> size, up: size -> hidden

`up` starts at zero, so the adapted model computes exactly what the base does until training moves it. The
base model's modules are not replaced: the adapters are attached as child modules of each decoder layer
(`bottleneck_attention`, `bottleneck_mlp`) and run by forward hooks on the attention and MLP blocks, so every
base parameter keeps its name and `generate`, gradient checkpointing and the base's own code work unchanged.
Decoder layers, attention and MLP blocks are found generically (the ModuleList with one entry per hidden
layer; the children whose classes are named *Attention* / *MLP*), so Llama, Qwen, Mistral, Gemma, Phi-3,
GPT-2 and GPT-NeoX all work.

On disk (`save_bottleneck` / `load_bottleneck`), next to the tokenizer in the run's `adapter/` folder:
    bottleneck_config.json     {"format": "tunesmith-bottleneck", "version": 1, "size", "dropout",
                                "activation", "hidden_size", "num_layers", "base_model_name_or_path"}
    bottleneck.safetensors     the adapter weights, keyed by their parameter names in the model

    model = load_model(base); model = load_bottleneck(model, "runs/x/adapter")
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.adapters.kinds.bottleneck import CONFIG_FILE
from tunesmith.errors import UserError

WEIGHTS_FILE = "bottleneck.safetensors"
FORMAT = "tunesmith-bottleneck"
SITES = ("attention", "mlp")
"""Where a layer's adapters sit: on the output of its attention block and of its MLP block."""
_MLP_NAMES = ("mlp", "feed_forward", "ffn")


@dataclass
class BottleneckConfig:
    size: int
    dropout: float = 0.0
    activation: str = "gelu"
    hidden_size: int = 0
    num_layers: int = 0
    base_model_name_or_path: str | None = None


class BottleneckAdapter(nn.Module):
    """down -> GELU -> dropout -> up, added to its input; fp32 weights whatever the base dtype (as PEFT does)."""

    def __init__(self, hidden_size: int, size: int, dropout: float) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, size)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(size, hidden_size)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (batch, seq, hidden) -> same
        delta = self.up(self.dropout(self.act(self.down(hidden.to(self.down.weight.dtype)))))
        return hidden + delta.to(hidden.dtype)


def add_bottleneck(model: nn.Module, size: int, dropout: float = 0.0) -> nn.Module:
    """Freeze `model` and attach trainable bottleneck adapters after every attention and MLP block; returns it."""
    if hasattr(model, "bottleneck_config"):
        raise ValueError("the model already has bottleneck adapters; load a fresh base to add others")
    for param in model.parameters():
        param.requires_grad_(False)
    layers = decoder_layers(model)
    hidden = _hidden_size(model)
    device = next(model.parameters()).device
    for layer in layers:
        for site, block in zip(SITES, layer_blocks(layer)):
            adapter = BottleneckAdapter(hidden, size, dropout).to(device)
            layer.add_module(f"bottleneck_{site}", adapter)
            block.register_forward_hook(_hook(adapter))
    model.bottleneck_config = BottleneckConfig(
        size=size, dropout=dropout, hidden_size=hidden, num_layers=len(layers),
        base_model_name_or_path=getattr(model, "name_or_path", None) or None,
    )
    return model


def save_bottleneck(model: nn.Module, out_dir: str | Path) -> Path:
    """Write the adapter weights and config (not the base weights) into `out_dir`."""
    config = getattr(model, "bottleneck_config", None)
    if not isinstance(config, BottleneckConfig):
        raise ValueError("save_bottleneck: the model has no bottleneck adapters (use add_bottleneck first)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {name: p.detach().contiguous().cpu() for name, p in adapter_parameters(model).items()}
    save_file(weights, out / WEIGHTS_FILE, metadata={"format": FORMAT})
    record = {"format": FORMAT, "version": 1, **asdict(config)}
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def load_bottleneck(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """Attach the adapters saved in `adapter_dir` to a freshly loaded base `model`; returns it, frozen."""
    folder = Path(adapter_dir)
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise UserError(f"{folder} holds no bottleneck adapter ({CONFIG_FILE} is missing)")
    raw: dict[str, Any] = json.loads(config_file.read_text())
    if raw.get("format") != FORMAT:
        raise UserError(f"{config_file} is not a tunesmith bottleneck adapter config")
    hidden, layers = _hidden_size(model), len(decoder_layers(model))
    if (raw["hidden_size"], raw["num_layers"]) != (hidden, layers):
        raise UserError(
            f"the bottleneck adapter in {folder} was trained on a base with hidden size {raw['hidden_size']} and "
            f"{raw['num_layers']} layers, but this model has {hidden} and {layers}; load it on its own base "
            f"({raw.get('base_model_name_or_path')})"
        )
    add_bottleneck(model, raw["size"], raw["dropout"])
    saved = load_file(folder / WEIGHTS_FILE)
    params = adapter_parameters(model)
    if saved.keys() != params.keys():
        raise UserError(
            f"{folder / WEIGHTS_FILE} does not match this model's adapter slots "
            f"(e.g. {sorted(saved.keys() ^ params.keys())[:2]}); load it on the architecture it was trained on"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name])
    for param in params.values():
        param.requires_grad_(False)
    return model


def adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The bottleneck adapters' parameters by their names in `model`."""
    return {
        f"{name}.{key}": param
        for name, module in model.named_modules()
        if isinstance(module, BottleneckAdapter)
        for key, param in module.named_parameters()
    }


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder layers: the one ModuleList with an entry per hidden layer.

    Found by shape rather than by path (`model.layers`, `transformer.h`, `gpt_neox.layers`, ...), so families
    we have not seen work too.
    """
    count = model.config.get_text_config().num_hidden_layers
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    if len(stacks) != 1:
        raise UserError(
            f"could not find the decoder layers of {type(model).__name__} ({len(stacks)} module lists of "
            f"{count} layers), which this adapter needs; use another adapter, e.g. lora"
        )
    return stacks[0]


def layer_blocks(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(attention block, MLP block) of one decoder layer, found by class and child names."""
    children = list(layer.named_children())
    attention = [m for _, m in children if "Attention" in type(m).__name__]
    mlp = [m for name, m in children if "MLP" in type(m).__name__ or name in _MLP_NAMES]
    if len(attention) != 1 or len(mlp) != 1:
        raise UserError(
            f"could not find one attention and one MLP block in {type(layer).__name__} (children: "
            f"{', '.join(name for name, _ in children)}), which this adapter needs; use another adapter, e.g. lora"
        )
    return attention[0], mlp[0]


def _hook(adapter: BottleneckAdapter) -> Any:
    """A forward hook that passes a block's output (a tensor, or a tuple led by one) through `adapter`."""

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (adapter(output[0]), *output[1:])
        return adapter(output)

    return hook


def _hidden_size(model: nn.Module) -> int:
    return model.config.get_text_config().hidden_size
