"""`distributed: {strategy: fsdp2}`: parameters, gradients and optimizer state sharded over the processes
with torch's FSDP2 (`fully_shard`), each decoder layer its own unit, the rest in the root unit.

Not through accelerate: asked for FSDP on CPU, accelerate silently runs plain DDP (it enables FSDP only on
accelerator devices), so a run could claim to shard and not. Here `fully_shard` is applied directly (it
runs over gloo on CPU) and `assert_sharded` checks that every parameter really is a DTensor split over
all ranks before training starts.

Saving gathers the full tensors on every rank (collectives), then the main process writes them: the
adapter or model folder is the same standard folder a single process writes, and the saved-tensor check
(runs/folder.py) refuses an empty one. Checkpoints hold full (consolidated) tensors too, the optimizer
state keyed by parameter name; on resume every rank reads them and keeps its shards.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, Shard

from tunesmith.adapters.kinds import sharded_kinds
from tunesmith.errors import UserError
from tunesmith.methods import BY_NAME, METHODS
from tunesmith.train.unwrap import unwrap_to_transformers


def shard_model(model: torch.nn.Module, world_size: int) -> torch.nn.Module:
    """Shard every decoder layer, then the root (embeddings, final norm, head); returns the same model."""
    inner = unwrap_to_transformers(model)
    layers = getattr(getattr(inner, "model", inner), "layers", None)
    if layers is None:
        raise UserError(f"distributed.strategy fsdp2 needs a model with decoder layers (model.layers); "
                        f"{type(inner).__name__} has none: use strategy ddp")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    count = assert_sharded(model, world_size)
    print(f"fsdp2: {count} parameters sharded over {world_size} processes (checked)", file=sys.stderr)
    return model


def assert_sharded(model: torch.nn.Module, world_size: int) -> int:
    """Every parameter is a DTensor sharded on dim 0 over `world_size` ranks, holding 1/world_size of it;
    returns how many parameters were checked."""
    if not isinstance(model, FSDPModule):
        raise RuntimeError("fsdp2: the model was not sharded (no FSDPModule)")
    for name, param in model.named_parameters():
        if not isinstance(param, DTensor) or param.device_mesh.size() != world_size:
            raise RuntimeError(f"fsdp2: parameter {name} is not sharded over {world_size} processes")
        if not all(isinstance(p, Shard) for p in param.placements):
            raise RuntimeError(f"fsdp2: parameter {name} is replicated, not sharded ({param.placements})")
        full, local = param.shape[0], param.to_local().shape[0]
        if local > -(-full // world_size):
            raise RuntimeError(f"fsdp2: parameter {name} keeps {local} of {full} rows on one rank")
    return sum(1 for _ in model.parameters())


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def full_state(model: torch.nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU tensors of the model's state, gathered on every rank (a collective: all call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    names = {n for n, p in model.named_parameters() if p.requires_grad} if trainable_only else None
    out = {}
    for name, value in state.items():
        if names is not None and name not in names:
            continue
        out[name] = (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu().contiguous()
    return out


def gather_checkpoint(model: torch.nn.Module, optimizer: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Full trainable tensors and full optimizer state (keyed by parameter name), collected on every rank
    (collectives: all ranks call it); the main process writes them as an ordinary checkpoint."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    raw = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch optimizer
    state = get_optimizer_state_dict(model, raw, options=StateDictOptions(full_state_dict=True))
    return full_state(model, trainable_only=True), _to_cpu(state)


def load_checkpoint_into(folder: Path, model: torch.nn.Module, optimizer: Any) -> None:
    """Every rank reads the full tensors and keeps its own shards of weights and optimizer state."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    from tunesmith.train.checkpoint import OPTIMIZER, WEIGHTS

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, load_file(folder / WEIGHTS), options=options)
    raw = getattr(optimizer, "optimizer", optimizer)
    state = torch.load(folder / OPTIMIZER, map_location="cpu", weights_only=True)
    set_optimizer_state_dict(model, raw, optim_state_dict=state, options=options)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, DTensor):
        value = value.full_tensor()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def check_supported(recipe: Any) -> None:
    """What fsdp2 runs here: SFT/CPT with LoRA or full fine-tuning."""
    if not BY_NAME[recipe.method].runs_sharded or not recipe.adapter_kind.runs_sharded:
        sharded = "/".join(m.name for m in METHODS if m.runs_sharded)
        raise UserError(f"distributed.strategy fsdp2 supports method {sharded} with adapter {sharded_kinds()} "
                        f"here, not {recipe.method}/{recipe.adapter}: use strategy ddp")
