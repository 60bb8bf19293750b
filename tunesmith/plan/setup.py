"""From a recipe (and the device it is planned for) to the `TrainSetup` the memory model reads.

The same resolution `train` applies: full fine-tuning loads fp32 weights, adapters the recipe's dtype (auto:
bf16 where the device has it), QLoRA NF4; mixed precision auto means bf16 autocast; methods that train on
samples (SFT/CPT) use the fused head on the common families; methods that need a reference (DPO/KTO/PPO) keep
a frozen copy with full weights. The method's facts come from its record (methods/unit.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.methods import BY_NAME
from tunesmith.methods.language_modeling import FUSED_FAMILIES
from tunesmith.plan.hardware import Device
from tunesmith.plan.memory import TrainSetup
from tunesmith.plan.shape import ModelShape
from tunesmith.recipe.spec import Recipe

if TYPE_CHECKING:
    import torch



def compute_dtype(recipe: Recipe) -> torch.dtype:
    """The dtype this machine's run computes its matmuls in: the loaded weights' when half, else autocast's
    (the trainer's rules: models.resolve_dtype, train/accelerator.py, kernels.attention_dtype). What the CPU
    time probe measures: an fp32 run timed with a bf16 probe is off by the emulation factor (~20x)."""
    from tunesmith.models.load import load_dtype_name, resolve_dtype
    from tunesmith.speedups.kernels import attention_dtype
    from tunesmith.train.accelerator import resolve_mixed_precision

    loaded = resolve_dtype(load_dtype_name(recipe.adapter, recipe.model_options.dtype))
    return attention_dtype(loaded, resolve_mixed_precision(recipe.train.mixed_precision))


def resolved_dtype(recipe: Recipe, device: Device) -> str:
    """The frozen weights' dtype name: full fine-tuning trains fp32; auto is bf16 on GPU, else what torch has."""
    from tunesmith.models.load import load_dtype_name

    setting = load_dtype_name(recipe.adapter, recipe.model_options.dtype)
    if setting != "auto":
        return setting
    if device.kind == "cuda":
        return "bf16"
    import torch

    from tunesmith.models.load import resolve_dtype

    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(resolve_dtype("auto"), "fp32")


def half_precision(recipe: Recipe, device: Device, dtype: str) -> bool:
    """Whether activations are half precision: autocast on, or half weights."""
    mixed = recipe.train.mixed_precision
    if mixed == "auto":
        if device.kind == "cuda":
            mixed = "bf16"
        else:
            from tunesmith.train.accelerator import resolve_mixed_precision

            mixed = resolve_mixed_precision("auto")
    return mixed != "no" or dtype != "fp32"


def setup_from_recipe(recipe: Recipe, shape: ModelShape, device: Device, *, nproc: int = 1,
                      sharding: str = "ddp", optimizer: str = "adamw", trained_share: float = 1.0) -> TrainSetup:
    """The recipe's training as the memory model sees it; checkpointing `auto` resolves to off here
    (plan/checkpointing.py decides it from the estimate)."""
    dtype, method = resolved_dtype(recipe, device), BY_NAME[recipe.method]
    spec = getattr(recipe, method.name, None)
    skip_reference = bool(getattr(spec, "precompute_ref", False) or getattr(spec, "reference_free", False))
    return TrainSetup(
        shape=shape, adapter=recipe.adapter, method=method.name, sequences_per_unit=method.sequences(recipe),
        trains_on_samples=method.trains_on_samples, reference_forward=method.needs_reference, weight_dtype=dtype,
        half_precision=half_precision(recipe, device, dtype), micro_batch=recipe.train.batch_size,
        seq_len=recipe.train.max_seq_len, trained_share=trained_share,
        checkpointing=recipe.train.gradient_checkpointing is True,
        fused_head=shape.family in FUSED_FAMILIES, lora_r=recipe.adapter_args.r, optimizer=optimizer,
        nproc=nproc, sharding=sharding,
        reference_copy=method.needs_reference and not recipe.adapter_kind.reference_by_disabling
        and not skip_reference,
        runtime_bytes=device.runtime_bytes,
        checkpoint_bytes=checkpoint_file_bytes(recipe.model, shape) if device.kind == "cpu" else 0,
        on_cpu=device.kind == "cpu",
        fused_lora=fuses_lora(recipe),
    )


def lora_fusion_allowed(kernels: str, strategy: str) -> bool:
    """Whether a run may fuse its LoRA layers and MLPs (train/speedups.py): not under `kernels: none`, which
    asks for plain PEFT, and not under ZeRO, which gathers a module's weights in hooks around that module's
    own forward, which a fused layer does not call."""
    return kernels != "none" and strategy not in ("zero2", "zero3")


def fuses_lora(recipe: Recipe) -> bool:
    """Whether training runs LoRA's fused layers: plain LoRA where fusion is allowed."""
    return recipe.adapter_kind.fused_layers and lora_fusion_allowed(recipe.model_options.kernels, recipe.distributed.strategy)


def checkpoint_file_bytes(model: str, shape: ModelShape) -> int:
    """Bytes of the model's weight files (a local folder's *.safetensors / *.bin), else bf16 of its parameters."""
    folder = Path(model)
    files = [*folder.glob("*.safetensors"), *folder.glob("*.bin")] if folder.is_dir() else []
    return sum(f.stat().st_size for f in files) or 2 * shape.params


def with_checkpointing(setup: TrainSetup, on: bool) -> TrainSetup:
    return replace(setup, checkpointing=on)
