"""What `plan` says of a vision-language model: the vision tower's and projector's parameters, whether they
train, and how many tokens each image becomes (which the text-only token count of the data leaves out).

Parameters are counted exactly, by building the model on the meta device (no memory, no weights read); image
tokens by running the model's own processor on one blank picture of its input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.recipe.spec import Recipe
from tunesmith.vision.families import is_vision_config, vision_family


@dataclass(frozen=True)
class VisionPlan:
    family: str
    tower_params: int
    projector_params: int
    tower_trained: bool
    projector_trained: bool
    tokens_per_image: int | None
    """Image tokens one picture becomes at the processor's size (None: the processor could not be read)."""
    images: int | None = None
    rows: int | None = None

    def lines(self) -> list[str]:
        def state(trained: bool) -> str:
            return "trained whole" if trained else "frozen"

        out = [f"vision ({self.family}): tower {self.tower_params / 1e6:,.2f}M parameters ({state(self.tower_trained)}),"
               f" projector {self.projector_params / 1e6:,.2f}M ({state(self.projector_trained)})"]
        if self.tokens_per_image is not None:
            per_row = f"; {self.images / self.rows:.2g} images per row" if self.images is not None and self.rows else ""
            out.append(f"image tokens: {self.tokens_per_image} per image{per_row}"
                       f"{f', {self.images * (self.tokens_per_image - 1):,} beyond the text tokens' if self.images else ''}")
        return out


def vision_param_counts(config: Any) -> tuple[int, int]:
    """(vision tower, projector) parameter counts of a VLM config; a projector inside the tower counts once, as
    the projector."""
    import torch
    from transformers import AutoModelForImageTextToText

    family = vision_family(config)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    tower = projector = 0
    for name, param in model.named_parameters():
        if name.startswith(family.projector + "."):
            projector += param.numel()
        elif name.startswith(family.vision_tower + "."):
            tower += param.numel()
    return tower, projector


def tokens_per_image(model: str, trust_remote_code: bool = False) -> int | None:
    """Image tokens the processor makes of one picture; None where the processor does not load."""
    from PIL import Image

    from tunesmith.errors import UserError
    from tunesmith.vision.processor import load_processor

    try:
        processor = load_processor(model, trust_remote_code)
    except UserError:
        return None
    image_id = getattr(processor, "image_token_id", None)
    if image_id is None:
        return None
    messages = [{"role": "user", "content": [{"type": "image"}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    ids = processor(text=[text], images=[[Image.new("RGB", (64, 64))]], add_special_tokens=False)["input_ids"][0]
    return sum(1 for i in ids if i == image_id)


def vision_plan(recipe: Recipe, config: Any, examples: Any = None) -> VisionPlan | None:
    """The vision facts of `recipe`'s model (None for a text model); `examples` count the data's images."""
    if not is_vision_config(config):
        return None
    tower, projector = vision_param_counts(config)
    images = sum(len(getattr(ex, "images", ())) for ex in examples) if examples is not None else None
    return VisionPlan(vision_family(config).name, tower, projector, recipe.vision.train_vision_tower,
                      recipe.vision.train_projector,
                      tokens_per_image(recipe.model, recipe.model_options.trust_remote_code),
                      images, len(examples) if examples is not None else None)
