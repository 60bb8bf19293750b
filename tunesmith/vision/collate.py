"""Conversations with images -> the processor's batch, with labels on the assistant tokens only.

Each `Conversation` is rendered by the processor's chat template with its pictures as image content parts (an
`<image>` placeholder in the text becomes `{"type": "image"}` where it stood), and the processor expands every
image into its image tokens and makes the pixel inputs. Which tokens are trained is fixed once per example
(`encode`): an assistant turn starts where the generation prompt of its prefix ends and runs to the end of its
rendered turn, trailing whitespace excluded (as data/tokenize.py does for text). Both ends are token counts of
prefixes through the same processor, and a prefix whose ids are not the start of the whole is an error, never a
silent mislabel. Image tokens and padding never carry loss. No packing: each row is one conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.data.images import IMAGE_PLACEHOLDER, ImageError, count_placeholders, open_image
from tunesmith.data.types import IGNORE_INDEX, Conversation
from tunesmith.errors import UserError

IMAGE_INPUTS: tuple[str, ...] = ("pixel_values", "pixel_attention_mask", "image_sizes", "image_grid_thw",
                                 "mm_token_type_ids")
"""What the supported families' processors make for the pictures, beside `input_ids` and `attention_mask`, and
their forwards read (LLaVA: pixel_values; Idefics3: + pixel_attention_mask; Qwen2-VL: + image_grid_thw)."""


@dataclass(frozen=True)
class Encoded:
    """What one conversation becomes: its token count and the [start, end) token spans that carry loss."""

    length: int
    spans: tuple[tuple[int, int], ...]

    @property
    def trained(self) -> int:
        return sum(end - start for start, end in self.spans)


def as_parts(conv: Conversation) -> list[dict[str, Any]]:
    """The chat as processor messages: text parts, and an image part at each placeholder."""
    if count_placeholders([m.content for m in conv.messages]) != len(conv.images):
        raise UserError(f"a conversation has {count_placeholders([m.content for m in conv.messages])} "
                        f"{IMAGE_PLACEHOLDER} placeholders but {len(conv.images)} images")
    messages = []
    for message in conv.messages:
        parts: list[dict[str, Any]] = []
        pieces = message.content.split(IMAGE_PLACEHOLDER)
        for index, piece in enumerate(pieces):
            if index:
                parts.append({"type": "image"})
            if piece:
                parts.append({"type": "text", "text": piece})
        messages.append({"role": message.role, "content": parts})
    return messages


def open_images(conv: Conversation) -> list[Any]:
    try:
        return [open_image(ref) for ref in conv.images]
    except ImageError as e:
        raise UserError(str(e)) from None


def _ids(processor: Any, text: str, images: list[Any]) -> list[int]:
    out = processor(text=[text], images=[images] if images else None, add_special_tokens=False)
    return list(out["input_ids"][0])


def encode(processor: Any, conv: Conversation, train_on: str = "all") -> Encoded:
    """Token count and trained spans of `conv` (see the module docstring); `train_on: last` keeps the final turn."""
    messages, images = as_parts(conv), open_images(conv)
    render = processor.apply_chat_template
    full = _ids(processor, render(messages, tokenize=False), images)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        shown = sum(part["type"] == "image" for m in messages[:k] for part in m["content"])
        start_ids = _ids(processor, render(messages[:k], tokenize=False, add_generation_prompt=True), images[:shown])
        end_text = render(messages[:k + 1], tokenize=False).rstrip()
        end_ids = _ids(processor, end_text, images[:shown])
        for ids in (start_ids, end_ids):
            if full[:len(ids)] != ids:
                raise UserError("the chat template's rendering of a prefix does not tokenize to the start of the "
                                "whole chat, so assistant tokens cannot be located exactly; use a template that "
                                "closes each turn with a special token (ChatML)")
        spans.append((len(start_ids), len(end_ids)))
    if train_on == "last":
        spans = spans[-1:]
    return Encoded(len(full), tuple(spans))


def collate(processor: Any, convs: Sequence[Conversation], encoded: Sequence[Encoded], max_len: int,
            image_token_id: int | None) -> dict[str, torch.Tensor]:
    """One padded batch from the processor (every family's extra inputs kept), with labels; cut at `max_len`."""
    texts = [processor.apply_chat_template(as_parts(c), tokenize=False) for c in convs]
    images = [open_images(c) for c in convs]
    out = processor(text=texts, images=images if any(images) else None, padding=True, return_tensors="pt",
                    add_special_tokens=False)
    batch = {key: value for key, value in out.items() if isinstance(value, torch.Tensor)}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = mask.sum(dim=1).tolist()
    if lengths != [e.length for e in encoded]:
        raise UserError(f"the processor made rows of {lengths} tokens where {[e.length for e in encoded]} were "
                        "planned; is the processor padding on the left?")
    labels = torch.full_like(ids, IGNORE_INDEX)
    for row, item in enumerate(encoded):
        for start, end in item.spans:
            labels[row, start:end] = ids[row, start:end]
    if image_token_id is not None:
        labels[ids == image_token_id] = IGNORE_INDEX
    labels[mask == 0] = IGNORE_INDEX
    batch["labels"] = labels
    return _cut(batch, max_len, image_token_id)


def _cut(batch: dict[str, torch.Tensor], max_len: int, image_token_id: int | None) -> dict[str, torch.Tensor]:
    """Rows longer than `max_len` lose their end; an image's tokens may not be cut (the model needs them all)."""
    ids = batch["input_ids"]
    if ids.shape[1] <= max_len:
        return batch
    if image_token_id is not None and bool((ids[:, max_len:] == image_token_id).any()):
        raise UserError(f"a row's image tokens reach past train.max_seq_len={max_len}; raise it, or use smaller "
                        "images")
    return {key: value[:, :max_len] if value.shape[:2] == ids.shape and not key.startswith("pixel") else value
            for key, value in batch.items()}
