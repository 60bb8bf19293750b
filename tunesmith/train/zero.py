"""`distributed: {strategy: zero2|zero3}`: DeepSpeed ZeRO through accelerate's `DeepSpeedPlugin`.

ZeRO-2 shards gradients and optimizer state over the processes; ZeRO-3 shards the parameters too (the model
is loaded already partitioned, because the plugin exists before the model: transformers sees ZeRO-3 and
loads under `deepspeed.zero.Init`). The engine is the one `accelerator.prepare` builds; the loop drives it
through DeepSpeed's own API, so that its guarantees hold:

- The step's loss is already normalised by the trained units of the whole step (distributed.py), so
  `backward(..., scale_wrt_gas=False)`; DeepSpeed averages gradients over the ranks as DDP does.
- The gradient-accumulation boundary is set on the last micro-batch of the step, and `engine.step()`
  (clip at train.max_grad_norm, update, zero the gradients) runs only after the loop has checked the
  step's loss is finite: a NaN never reaches the weights (accelerate's wrapper steps inside backward).
- The learning-rate schedule stays ours (train/optim.py), stepped after the engine's update.

Saving gathers the weights (`accelerator.get_state_dict`: ZeRO-3 consolidates the partitions, a collective
every rank joins); the main process writes the usual adapter or model folder, and the saved-tensor check
(runs/folder.py) refuses an empty one. On CPU DeepSpeed's CPU accelerator talks over gloo; its first start
on a machine compiles a small shared-memory op (minutes, then cached in ~/.cache/torch_extensions).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

from tunesmith.adapters.kinds import sharded_kinds
from tunesmith.errors import UserError
from tunesmith.methods import BY_NAME, METHODS

STAGES = {"zero2": 2, "zero3": 3}


def is_zero(strategy: str) -> bool:
    return strategy in STAGES


def check_supported(recipe: Any) -> None:
    """What runs and is tested here: SFT/CPT, LoRA or full fine-tuning, no mid-run checkpoints yet."""
    strategy = recipe.distributed.strategy
    if not BY_NAME[recipe.method].runs_sharded or not recipe.adapter_kind.runs_sharded:
        sharded = "/".join(m.name for m in METHODS if m.runs_sharded)
        raise UserError(f"distributed.strategy {strategy} supports method {sharded} with adapter {sharded_kinds()} "
                        f"here, not {recipe.method}/{recipe.adapter}: use strategy ddp")
    if recipe.train.save_every:
        raise UserError(f"distributed.strategy {strategy} does not write resumable checkpoints yet (train.save_every="
                        f"{recipe.train.save_every}): remove train.save_every, or use strategy ddp or fsdp2")
    if importlib.util.find_spec("deepspeed") is None:
        raise UserError(f"distributed.strategy {strategy} needs DeepSpeed: pip install deepspeed "
                        "(or use strategy ddp or fsdp2)")


def deepspeed_config(recipe: Any, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config of the recipe: its micro-batch, its step's micro-batches split over the ranks,
    its clipping, the ZeRO stage and `distributed.zero_options`; mixed precision is filled in by accelerate
    from train.mixed_precision."""
    t = recipe.train
    per_rank = max(t.grad_accum // world_size, 1)
    return {
        "train_micro_batch_size_per_gpu": t.batch_size,
        "gradient_accumulation_steps": per_rank,
        "train_batch_size": t.batch_size * per_rank * world_size,
        "gradient_clipping": t.max_grad_norm,
        "zero_optimization": {"stage3_gather_16bit_weights_on_model_save": True, **recipe.distributed.zero_options,
                              "stage": STAGES[recipe.distributed.strategy]},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def accelerator_options(recipe: Any, world_size: int) -> dict[str, Any]:
    """`Accelerator(...)` arguments for a ZeRO run: the plugin, and gloo between CPU processes."""
    check_supported(recipe)
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    config = deepspeed_config(recipe, world_size)
    plugin = DeepSpeedPlugin(hf_ds_config=config, zero3_init_flag=recipe.distributed.strategy == "zero3")
    handlers = [] if torch.cuda.is_available() else [InitProcessGroupKwargs(backend="gloo")]
    return {"deepspeed_plugin": plugin, "kwargs_handlers": handlers,
            "gradient_accumulation_steps": config["gradient_accumulation_steps"]}


def check_sharded(engine: Any, strategy: str, world_size: int) -> str:
    """Proof that the engine shards what the strategy says, before training starts; returns a one-line report.

    ZeRO-3: every parameter is partitioned (this rank holds at most its share of it, the rest released);
    ZeRO-2: the optimizer's fp32 master weights on this rank are one partition, not the whole."""
    stage = engine.zero_optimization_stage()
    if stage != STAGES[strategy]:
        raise RuntimeError(f"{strategy}: the DeepSpeed engine runs ZeRO stage {stage}")
    params = list(engine.module.parameters())
    if stage == 3:
        for param in params:
            share = -(-int(param.ds_numel) // world_size)
            if param.ds_tensor.numel() > share or param.numel() != 0:
                raise RuntimeError(f"{strategy}: a parameter of {param.ds_numel} elements is not partitioned")
        held, total = sum(p.ds_tensor.numel() for p in params), sum(int(p.ds_numel) for p in params)
    else:
        held = sum(p.numel() for p in engine.optimizer.single_partition_of_fp32_groups)
        total = sum(p.numel() for p in params if p.requires_grad)
        if held > -(-total // world_size) + 64 * world_size:  # DeepSpeed pads partitions for alignment
            raise RuntimeError(f"{strategy}: this rank's optimizer holds {held} of {total} trainable elements")
    return (f"{strategy}: DeepSpeed ZeRO stage {stage} over {world_size} processes, this rank holds {held:,} of "
            f"{total:,} {'parameter' if stage == 3 else 'optimizer master'} elements (checked)")


def backward(engine: Any, loss: torch.Tensor, last: bool) -> None:
    """Backward of one micro-batch; `last` marks the step's boundary, where ZeRO reduces the gradients."""
    engine.set_gradient_accumulation_boundary(last)
    engine.backward(loss, scale_wrt_gas=False)


def step(engine: Any) -> float:
    """Clip, update and zero the gradients; returns the gradient norm before clipping."""
    engine.step()
    norm = engine.get_global_grad_norm()
    return float(norm) if norm is not None else float("nan")


def full_state(accelerator: Any, engine: Any) -> dict[str, torch.Tensor]:
    """The whole model's tensors on the main process, {} on the others (collectives: all ranks call it).

    ZeRO-3's partitions are gathered; trained weights come from the optimizer's fp32 master copy, so that
    under bf16 the saved weights are the fp32 ones a single process saves, not the engine's bf16 copy."""
    from deepspeed.utils import safe_get_full_fp32_param

    state = accelerator.get_state_dict(engine) or {}  # ZeRO-3 hands the gathered tensors to the main process only
    master = {name: safe_get_full_fp32_param(param) for name, param in engine.module.named_parameters()
              if param.requires_grad}
    if not accelerator.is_main_process:
        return {}
    state.update({name: value for name, value in master.items() if value is not None})
    return {name: value.detach().cpu().contiguous() for name, value in state.items()}
