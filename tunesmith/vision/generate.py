"""Greedy answers of a vision-language model to image chats, batched through its processor (left-padded for
generation): what held-out exact match and the merge check compare."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tunesmith.data.types import Conversation
from tunesmith.vision.collate import as_parts, open_images


@torch.no_grad()
def greedy_answers(model: Any, processor: Any, prompts: Sequence[Conversation], max_new_tokens: int = 16,
                   batch_size: int = 16) -> list[str]:
    """The model's greedy continuation of each prompt chat (its messages up to the answer), decoded, stripped."""
    model.eval()
    answers: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        texts = [processor.apply_chat_template(as_parts(c), tokenize=False, add_generation_prompt=True) for c in chunk]
        images = [open_images(c) for c in chunk]
        batch = processor(text=texts, images=images if any(images) else None, padding=True, padding_side="left",
                          return_tensors="pt", add_special_tokens=False)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=processor.tokenizer.pad_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        answers += [text.strip() for text in processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers
