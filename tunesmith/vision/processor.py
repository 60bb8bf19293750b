"""The processor of a vision-language model folder: its image processor, tokenizer and chat template together.

Batches of image chats are built by it alone (collate.py), so the image tokens each picture expands to and the
pixel inputs a family needs (`pixel_attention_mask` for Idefics3, `image_grid_thw` for Qwen2-VL) are exactly
what transformers' own inference path makes.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from tunesmith.errors import UserError
from tunesmith.models.load import resolve_source
from tunesmith.vision.families import VisionFamily, is_vision_config, vision_family


def load_processor(path_or_id: str, trust_remote_code: bool = False, config: Any = None) -> Any:
    """`AutoProcessor` for the model, with right padding and a pad token; a clear error when the folder has none.
    Without torchvision, a family whose transformers processor needs it gets its pictures-only processor
    (families.py `without_torchvision`), found from `config` (the model's, for a run's adapter folder, which
    holds the processor files but no model config) or the folder's own config."""
    from transformers import AutoProcessor

    source, local_only = resolve_source(path_or_id, need_config=False)  # an adapter folder holds one too
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                  local_files_only=local_only)
    except (ImportError, AttributeError, OSError, ValueError) as e:
        processor = _without_torchvision(path_or_id, source, local_only, config, e)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or getattr(processor, "image_processor", None) is None:
        raise UserError(f"model '{path_or_id}': its processor has no tokenizer or no image processor")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if getattr(processor, "chat_template", None) is None and getattr(tokenizer, "chat_template", None):
        processor.chat_template = tokenizer.chat_template
    return processor


def _without_torchvision(path_or_id: str, source: str, local_only: bool, config: Any, error: Exception) -> Any:
    """The family's processor built without torchvision where AutoProcessor failed for its lack (Qwen2-VL's
    video half needs it), else a UserError saying what the folder needs or which torchvision to install."""
    if importlib.util.find_spec("torchvision") is None:
        family = _family_of(config if config is not None else _config_of(source, local_only))
        if family is not None and family.without_torchvision is not None:
            try:
                return family.without_torchvision(source, local_only)
            except (ImportError, AttributeError, OSError, ValueError) as e:
                error = e
        raise UserError(f"model '{path_or_id}' is a vision-language model, but its processor did not load ({error}); "
                        "it may need torchvision, which is not installed: pip install the torchvision release built "
                        f"for your torch {torch.__version__} (torchvision 0.28 for torch 2.13; a CPU torch needs the "
                        "CPU build), or check that the folder holds the processor files save_pretrained writes"
                        ) from error
    raise UserError(f"model '{path_or_id}' is a vision-language model, but its processor did not load ({error}); "
                    "the folder needs the processor files save_pretrained writes (preprocessor_config.json, "
                    "tokenizer, chat template)") from error


def _config_of(source: str, local_only: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError):  # an adapter folder: its processor files, but no model config
        return None


def _family_of(config: Any) -> VisionFamily | None:
    return vision_family(config) if config is not None and is_vision_config(config) else None


def processor_if_vision(model: torch.nn.Module, folder: str) -> Any:
    """The processor saved in `folder` when `model` is a vision-language model, else None."""
    config = getattr(model, "config", None)
    return load_processor(folder, config=config) if is_vision_config(config) else None


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
