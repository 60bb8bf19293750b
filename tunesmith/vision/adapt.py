"""What trains in a vision-language model: LoRA on the language model only, the projector and the vision
tower by the recipe's `vision:` block.

By default the vision tower and the projector are frozen and LoRA (or DoRA, QLoRA) wraps the linears of the
language model alone: target modules are resolved here to full module names under the language model, so a
`q_proj` of the vision tower is never wrapped. `vision.train_projector` trains the projector whole
(PEFT `modules_to_save`: saved in the adapter, folded in by merge); `vision.train_vision_tower` the tower too.
Full fine-tuning trains the language model, and the other parts by the same two keys.
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.errors import UserError
from tunesmith.vision.families import VisionFamily

LINEAR_TYPES = ("Linear", "Linear4bit", "Linear8bitLt")


def language_model_linears(model: torch.nn.Module, family: VisionFamily, targets: str | list[str]) -> list[str]:
    """Full names of the language model's linear layers that `targets` names (`all-linear`: every one)."""
    prefix = family.language_model + "."
    wanted = None if targets == "all-linear" else ({targets} if isinstance(targets, str) else set(targets))
    names = [name for name, module in model.named_modules()
             if name.startswith(prefix) and type(module).__name__ in LINEAR_TYPES
             and (wanted is None or name.rpartition(".")[2] in wanted)]
    if not names:
        raise UserError(f"adapter_args.target_modules {targets!r} matches no linear layer of the "
                        f"{family.name} language model ({family.language_model})")
    return names


def trained_parts(family: VisionFamily, vision: Any) -> list[str]:
    """Modules trained whole beside the adapter, from the recipe's `vision:` block."""
    parts = [family.projector] if vision.train_projector else []
    if vision.train_vision_tower:
        parts.append(family.vision_tower)
    return parts


def restrict_peft_config(config: Any, model: torch.nn.Module, family: VisionFamily, vision: Any) -> Any:
    """A PEFT config of a LoRA-like kind, narrowed to the language model, with the trained parts saved whole."""
    config.target_modules = language_model_linears(model, family, config.target_modules or "all-linear")
    config.modules_to_save = trained_parts(family, vision) or None
    return config


def freeze_for_full(model: torch.nn.Module, family: VisionFamily, vision: Any) -> None:
    """Full fine-tuning of a VLM: the language model trains; the tower and projector only when asked."""
    frozen = [family.vision_tower] * (not vision.train_vision_tower) + [family.projector] * (not vision.train_projector)
    for name, param in model.named_parameters():
        if any(name.startswith(part + ".") for part in frozen):
            param.requires_grad_(False)
    if vision.train_projector:  # the projector may sit inside the tower (Qwen2-VL's merger)
        for name, param in model.named_parameters():
            if name.startswith(family.projector + "."):
                param.requires_grad_(True)
