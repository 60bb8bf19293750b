"""The vision-language families tunesmith trains, one record each: where the parts sit in transformers' model.

The rest of the code asks a record (`vision_family(config)`) for module paths instead of comparing family names:
LoRA goes on the language model's linears only, the projector is trained whole (`modules_to_save`) when asked,
the vision tower stays frozen unless asked, and 4-bit quantization skips everything outside the language model.
Paths are as `named_modules()` of the `...ForConditionalGeneration` class spells them in transformers 5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VisionFamily:
    model_types: tuple[str, ...]
    vision_tower: str
    """The image encoder (CLIP, SigLIP, Qwen2-VL's ViT): frozen unless `vision.train_vision_tower`."""
    projector: str
    """Maps image features into the language model's embedding space (trained with `vision.train_projector`)."""
    language_model: str
    """The decoder that LoRA targets; with `lm_head`, the only part QLoRA quantizes."""
    without_torchvision: Callable[[str, bool], Any] | None = None
    """(folder or hub id, local files only) -> the family's processor for pictures alone, built without torchvision,
    for a family whose transformers processor cannot be built without it; None: it needs none."""

    @property
    def name(self) -> str:
        return self.model_types[0]

    def not_quantized(self) -> list[str]:
        """Module paths bitsandbytes must leave in full precision: all but the language model's linears
        (transformers matches each from the start of a module's full name)."""
        return [self.vision_tower, self.projector, "lm_head"]


FAMILIES: tuple[VisionFamily, ...] = (
    VisionFamily(("llava",), "model.vision_tower", "model.multi_modal_projector", "model.language_model"),
    VisionFamily(("idefics3", "smolvlm"), "model.vision_model", "model.connector", "model.text_model"),
    VisionFamily(("qwen2_vl", "qwen2_5_vl"), "model.visual", "model.visual.merger", "model.language_model",
                 without_torchvision=lambda source, local: _qwen2_vl_images_only(source, local)),
)
BY_MODEL_TYPE: dict[str, VisionFamily] = {t: family for family in FAMILIES for t in family.model_types}
SUPPORTED: tuple[str, ...] = tuple(BY_MODEL_TYPE)


def _qwen2_vl_images_only(source: str, local_files_only: bool) -> Any:
    from tunesmith.vision.qwen2_vl import load_images_only

    return load_images_only(source, local_files_only)


def is_vision_config(config: Any) -> bool:
    """Whether a model config (object or config.json dict) describes a vision-language model: it has a vision
    config beside its text config. A family not in FAMILIES is refused by `vision_family` with the list."""
    if isinstance(config, dict):
        return "vision_config" in config and "text_config" in config
    return getattr(config, "vision_config", None) is not None and getattr(config, "text_config", None) is not None


def vision_family(config: Any) -> VisionFamily:
    """The record of a VLM config; a clear error for a vision-language family not supported yet."""
    from tunesmith.errors import UserError

    model_type = config["model_type"] if isinstance(config, dict) else config.model_type
    family = BY_MODEL_TYPE.get(model_type)
    if family is None:
        raise UserError(f"vision-language model_type '{model_type}' is not supported for training yet; "
                        f"supported: {', '.join(SUPPORTED)}")
    return family
