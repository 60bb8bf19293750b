"""Chats to a vision-language model: rendered and expanded by the model's own processor, as in training.

A served VLM (its base has a processor: store.Base.processor) renders every chat with the processor's chat
template, pictures as image parts at the `<image>` places (vision/collate.py's `as_parts`, the function the
training batches use), so the served model reads the tokens it learned from. The prompt ids are the
processor's, each picture already expanded into its image tokens: the context check and usage count them.
A batch of jobs with pictures is made by the processor in one call, left-padded for generation, and its
pixel inputs and family extras (`pixel_attention_mask`, `image_grid_thw`, ...) go to `generate` as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tunesmith.data.types import Conversation, Message
from tunesmith.vision.collate import as_parts


def render(processor: Any, messages: Sequence[Message], images: tuple[str, ...]) -> str:
    """The chat as the processor's template writes it, ending with the assistant header."""
    conv = Conversation(tuple(messages), images=images)
    return processor.apply_chat_template(as_parts(conv), tokenize=False, add_generation_prompt=True)


def prompt_ids(processor: Any, text: str, pictures: Sequence[Any]) -> list[int]:
    """The rendered chat's ids with every picture (decoded once, by serve/images.py) expanded into its image
    tokens."""
    out = processor(text=[text], images=[list(pictures)] if pictures else None, add_special_tokens=False)
    return [int(i) for i in out["input_ids"][0]]


def batch_inputs(processor: Any, texts: Sequence[str], pictures: Sequence[Sequence[Any]]) -> dict[str, torch.Tensor]:
    """One left-padded batch of rendered chats with their decoded pictures: ids, mask and the pixel inputs."""
    out = processor(text=list(texts), images=[list(row) for row in pictures], padding=True, padding_side="left",
                    return_tensors="pt", add_special_tokens=False)
    return {key: value for key, value in out.items() if isinstance(value, torch.Tensor)}
