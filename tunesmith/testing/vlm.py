"""Tiny random vision-language models (LLaVA, Idefics3, Qwen2-VL), written as complete Hugging Face folders
(config, random weights, processor, tokenizer with a chat template that places images), so tests exercise every
family's real classes offline and in seconds.

No small pretrained VLM ships in a package here, so these are built from configs: 2 text layers x 64 hidden, a
2-layer vision tower on 16-32 pixel images that gives 4 image tokens (LLaVA 4 patches, Idefics3 16 patches
shuffled by 2, Qwen2-VL 16 patches merged by 2). `AutoModelForImageTextToText` and `AutoProcessor` reload them.

    python -c "from tunesmith.testing.vlm import save_tiny_vlm; save_tiny_vlm('llava', 'runs/tiny-llava')"
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, PretrainedConfig, PreTrainedTokenizerFast

from tunesmith.errors import UserError, suggestion
from tunesmith.testing.tiny import tiny_tokenizer

IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def chat_template(image_marker: str) -> str:
    """A ChatML template whose content may be a string or a list of parts; an image part renders as the family's
    marker (what its processor expands into image tokens)."""
    return (
        "{% for message in messages %}" + IM_START + "{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'image' %}" + image_marker +
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
        + IM_END + "\n{% endfor %}{% if add_generation_prompt %}" + IM_START + "assistant\n{% endif %}"
    )


def vlm_tokenizer(image_tokens: list[str], image_marker: str, texts: list[str] | None = None) -> PreTrainedTokenizerFast:
    """The tiny byte-level tokenizer plus ChatML and the family's image tokens; eos is the end of a turn, as in
    SmolLM2, so generation stops where the template closes an answer. No BOS is added: the template is the text."""
    tokenizer = tiny_tokenizer(texts)
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END, *image_tokens]})
    tokenizer.eos_token = IM_END
    tokenizer._tokenizer.post_processor = None
    tokenizer.chat_template = chat_template(image_marker)
    return tokenizer


def _text_config(model_type: str, vocab: int, **extra: Any) -> dict[str, Any]:
    return dict(model_type=model_type, vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **extra)


def _llava(tokenizer: PreTrainedTokenizerFast) -> tuple[PretrainedConfig, Any]:
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaProcessor

    image_id = tokenizer.convert_tokens_to_ids("<image>")
    config = LlavaConfig(
        text_config=_text_config("llama", len(tokenizer)),
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=28, patch_size=14, projection_dim=32),
        image_token_id=image_id, projector_hidden_act="gelu", vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    images = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=tokenizer.chat_template)
    return config, processor


def _idefics3(tokenizer: PreTrainedTokenizerFast) -> tuple[PretrainedConfig, Any]:
    from transformers import Idefics3Config, Idefics3ImageProcessorPil, Idefics3Processor

    config = Idefics3Config(
        text_config=_text_config("llama", len(tokenizer)),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=2,
    )
    images = Idefics3ImageProcessorPil(size={"longest_edge": 32}, max_image_size={"longest_edge": 32},
                                       do_image_splitting=False)
    processor = Idefics3Processor(image_processor=images, tokenizer=tokenizer, image_seq_len=4,
                                  chat_template=tokenizer.chat_template)
    return config, processor


def _qwen2_vl(tokenizer: PreTrainedTokenizerFast) -> tuple[PretrainedConfig, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessorPil, Qwen2VLProcessor

    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        text_config=_text_config("qwen2_vl_text", len(tokenizer),
                                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                  "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    images = Qwen2VLImageProcessorPil(size={"shortest_edge": 256, "longest_edge": 256}, patch_size=4, merge_size=2,
                                      temporal_patch_size=2)
    if importlib.util.find_spec("torchvision") is None:  # transformers' Qwen2-VL processor requires its video part
        from tunesmith.vision.qwen2_vl import ImagesOnlyQwen2VLProcessor

        return config, ImagesOnlyQwen2VLProcessor(images, tokenizer, chat_template=tokenizer.chat_template)
    processor = Qwen2VLProcessor(image_processor=images, tokenizer=tokenizer, chat_template=tokenizer.chat_template)
    return config, processor


_FAMILIES: dict[str, tuple[list[str], str, Callable[[PreTrainedTokenizerFast], tuple[PretrainedConfig, Any]]]] = {
    "llava": (["<image>"], "<image>", _llava),
    "idefics3": (["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"], "<image>", _idefics3),
    "qwen2_vl": (["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
                 "<|vision_start|><|image_pad|><|vision_end|>", _qwen2_vl),
}
VLM_FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def tiny_vlm(family: str, seed: int = 0, texts: list[str] | None = None) -> tuple[torch.nn.Module, Any]:
    """(a randomly initialised fp32 `family` VLM in eval mode, its processor); the seed is applied in a forked RNG."""
    if family not in _FAMILIES:
        raise UserError(f"unknown tiny VLM family '{family}'{suggestion(family, VLM_FAMILIES)}; "
                        f"use one of: {', '.join(VLM_FAMILIES)}")
    image_tokens, marker, build = _FAMILIES[family]
    tokenizer = vlm_tokenizer(image_tokens, marker, texts)
    config, processor = build(tokenizer)
    config.text_config.pad_token_id = tokenizer.pad_token_id
    config.text_config.eos_token_id = tokenizer.eos_token_id
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


def save_tiny_vlm(family: str, out_dir: str | Path, seed: int = 0, texts: list[str] | None = None) -> Path:
    """Write a tiny `family` VLM folder (weights, config, processor, tokenizer, chat template); returns it."""
    out = Path(out_dir)
    model, processor = tiny_vlm(family, seed, texts)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
