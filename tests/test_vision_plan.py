"""`plan` on a vision-language model: the vision tower and projector counted exactly, image tokens per picture."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.models.load import load_config, load_model
from tunesmith.plan.shape import shape_from_config
from tunesmith.plan.vision import tokens_per_image, vision_param_counts
from tunesmith.testing.vlm import save_tiny_vlm
from tunesmith.vision.families import vision_family


@pytest.mark.parametrize("family", ["llava", "idefics3", "qwen2_vl"])
def test_vision_parameters_are_counted_as_the_model_holds_them(family: str, tmp_path: Path) -> None:
    folder = str(save_tiny_vlm(family, tmp_path / family))
    model, config = load_model(folder, dtype="fp32"), load_config(folder)
    parts = vision_family(config)
    params = dict(model.named_parameters())
    projector = sum(p.numel() for n, p in params.items() if n.startswith(parts.projector + "."))
    tower = sum(p.numel() for n, p in params.items() if n.startswith(parts.vision_tower + ".")) - (
        projector if parts.projector.startswith(parts.vision_tower + ".") else 0)
    assert vision_param_counts(config) == (tower, projector)
    assert shape_from_config(config).vision_params == tower + projector


@pytest.mark.parametrize("family", ["llava", "idefics3"])
def test_image_tokens_per_picture_come_from_the_processor(family: str, tmp_path: Path) -> None:
    assert tokens_per_image(str(save_tiny_vlm(family, tmp_path / family))) == 4
