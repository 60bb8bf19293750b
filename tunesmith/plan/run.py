"""`tunesmith plan RECIPE`: the recipe's peak memory by part (checkpointing off and on), host RAM, time per
step, epoch and run, and what to change when it does not fit.

Host RAM: on CPU the device is the host. On a GPU each process holds its runtime (HOST_RUNTIME_BYTES) and,
while loading, the weights as read (tunesmith loads full weights on the CPU and accelerate then places
them; QLoRA quantizes tensor by tensor on the device, so about one 5 GiB shard), times the processes on
the machine: the reason runs that fit on the GPU still die of host memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tunesmith.errors import UserError
from tunesmith.plan.checkpointing import FIT_SHARE
from tunesmith.plan.fixes import fixes
from tunesmith.plan.hardware import HOST_RUNTIME_BYTES, Device
from tunesmith.plan.memory import DTYPE_BYTES, GIB, SHARDINGS, MemoryEstimate, TrainSetup, estimate_memory
from tunesmith.plan.model_source import read_config
from tunesmith.plan.setup import setup_from_recipe
from tunesmith.plan.shape import ModelShape, load_shape
from tunesmith.plan.timing import DataSize, TimeEstimate, estimate_time
from tunesmith.plan.vision import VisionPlan, tokens_per_image, vision_plan
from tunesmith.recipe.spec import Recipe

SHARD_BYTES = 5 * GIB


@dataclass
class PlanResult:
    device: Device
    setup: TrainSetup
    without: MemoryEstimate
    with_ckpt: MemoryEstimate
    checkpointing: bool              # what the recipe's setting resolves to
    host_bytes: int
    size: DataSize | None
    time: TimeEstimate | None
    fixes: list[str]
    vision: VisionPlan | None = None

    @property
    def chosen(self) -> MemoryEstimate:
        return self.with_ckpt if self.checkpointing else self.without

    @property
    def fits(self) -> bool:
        return self.chosen.total <= self.device.memory


def host_bytes(s: TrainSetup, device: Device, chosen: MemoryEstimate) -> int:
    """Peak host RAM of the whole machine (all `nproc` processes)."""
    if device.kind == "cpu":
        return chosen.total * s.nproc
    shape = s.shape
    if s.adapter_kind.base_quantization is not None:
        loaded = min(SHARD_BYTES, DTYPE_BYTES["bf16"] * shape.params)
    else:
        loaded = DTYPE_BYTES["fp32" if s.adapter_kind.trains_base else s.weight_dtype] * shape.params
    return s.nproc * (HOST_RUNTIME_BYTES + loaded)


def plan_recipe(recipe: Recipe, device: Device, *, nproc: int = 1, sharding: str = "ddp",
                optimizer: str = "adamw", size: DataSize | None = None, shape: ModelShape | None = None,
                checkpointing: bool | None = None) -> PlanResult:
    """Estimate `recipe` on `device` x `nproc`; `size` of the data for the time (None: unknown). `shape` and
    `checkpointing` let a trainer that has them already (train/plan_check.py) skip reading and deciding."""
    if sharding not in SHARDINGS:
        raise UserError(f"--sharding '{sharding}': choose one of {', '.join(SHARDINGS)}")
    if nproc < 1:
        raise UserError("--nproc must be 1 or more")
    shape = shape or load_shape(recipe.model, recipe.model_options.trust_remote_code)
    setup = setup_from_recipe(recipe, shape, device, nproc=nproc, sharding=sharding, optimizer=optimizer,
                              trained_share=size.trained_share if size else 1.0)
    without = estimate_memory(replace(setup, checkpointing=False))
    with_ckpt = estimate_memory(replace(setup, checkpointing=True))
    setting = recipe.train.gradient_checkpointing
    if checkpointing is None and setting == "auto":  # the trainer's rule (checkpointing.py), on the device's memory
        checkpointing = without.parts["activations"] > FIT_SHARE * device.memory
    elif checkpointing is None:
        checkpointing = bool(setting)
    setup = replace(setup, checkpointing=checkpointing)
    chosen = with_ckpt if checkpointing else without
    timing = estimate_time(recipe, setup, size, device.flops) if size else None
    found = fixes(setup, device.memory) if chosen.total > device.memory else []
    vision = vision_plan(recipe, read_config(recipe.model, recipe.model_options.trust_remote_code)) \
        if shape.vision_params else None
    return PlanResult(device, setup, without, with_ckpt, checkpointing, host_bytes(setup, device, chosen),
                      size, timing, found, vision)


def data_size(recipe: Recipe) -> DataSize | None:
    """Training tokens and samples per epoch, from the recipe's data (tokenized once, through the data cache;
    a GGUF model's tokenizer is read from its metadata, not converted)."""
    from tunesmith.data.pipeline import prepare_data
    from tunesmith.plan.model_source import read_tokenizer

    try:
        tokenizer = read_tokenizer(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
        data = prepare_data(recipe, tokenizer)
    except (UserError, OSError, ValueError):
        return None
    size = size_of(data.summary())
    images = sum(len(getattr(ex, "images", ())) for ex in data.train_examples)
    per_image = tokens_per_image(recipe.model, recipe.model_options.trust_remote_code) if images else None
    if size is not None and per_image:  # each <image> placeholder was one token of the text; the model sees more
        size = replace(size, tokens=size.tokens + images * (per_image - 1))
    return size


def size_of(summary: dict[str, Any]) -> DataSize | None:
    """The DataSize of a data summary (PreparedData.summary(), as run.json records it); None without tokens."""
    tokens = int(summary.get("train_tokens") or 0)
    if not tokens:
        return None
    return DataSize(tokens=tokens, samples=int(summary.get("train_samples") or 1),
                    trained_tokens=int(summary.get("trained_tokens") or 0) or None)


def given_size(recipe: Recipe, tokens: int) -> DataSize:
    """`--tokens N` alone: rows taken as full (max_seq_len tokens each)."""
    return DataSize(tokens=tokens, samples=max(1, -(-tokens // recipe.train.max_seq_len)))
