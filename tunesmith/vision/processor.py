"""The processor of a vision-language model folder: its image processor, tokenizer and chat template together.

Batches of image chats are built by it alone (collate.py), so the image tokens each picture expands to and the
pixel inputs a family needs (`pixel_attention_mask` for Idefics3, `image_grid_thw` for Qwen2-VL) are exactly
what transformers' own inference path makes.
"""

from __future__ import annotations

from typing import Any

import torch

from tunesmith.errors import UserError
from tunesmith.models.load import resolve_source
from tunesmith.vision.families import is_vision_config


def load_processor(path_or_id: str, trust_remote_code: bool = False) -> Any:
    """`AutoProcessor` for the model, with right padding and a pad token; a clear error when the folder has none."""
    from transformers import AutoProcessor

    source, local_only = resolve_source(path_or_id, need_config=False)  # an adapter folder holds one too
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                  local_files_only=local_only)
    except (ImportError, AttributeError, OSError, ValueError) as e:
        raise UserError(f"model '{path_or_id}' is a vision-language model, but its processor did not load ({e}); "
                        "the folder needs the processor files save_pretrained writes (preprocessor_config.json, "
                        "tokenizer, chat template), and some families need torchvision") from e
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or getattr(processor, "image_processor", None) is None:
        raise UserError(f"model '{path_or_id}': its processor has no tokenizer or no image processor")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if getattr(processor, "chat_template", None) is None and getattr(tokenizer, "chat_template", None):
        processor.chat_template = tokenizer.chat_template
    return processor


def processor_if_vision(model: torch.nn.Module, folder: str) -> Any:
    """The processor saved in `folder` when `model` is a vision-language model, else None."""
    config = getattr(model, "config", None)
    return load_processor(folder) if is_vision_config(config) else None


def parity_inputs(processor: Any) -> dict[str, torch.Tensor]:
    """One image chat prompt, processed as in training: what a merge compares base + adapter and merged model on,
    so the projector and everything the image passes through are checked too."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), (240, 240, 240))
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill=(220, 30, 30))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the picture?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    out = processor(text=[text], images=[[image]], return_tensors="pt", add_special_tokens=False)
    return {key: value for key, value in out.items() if isinstance(value, torch.Tensor)}
