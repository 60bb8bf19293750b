"""Qwen2-VL's processor without its video half, for a machine without torchvision.

transformers 5's `Qwen2VLProcessor` takes an image processor, a tokenizer and a video processor, and checks each
against its class; `Qwen2VLVideoProcessor` (like every video processor) needs torchvision, so without it the
processor cannot be built at all, although its image side has a PIL/numpy implementation
(`Qwen2VLImageProcessorPil`). Torchvision must match torch's own build (torchvision 0.28 pairs with torch 2.13;
a CUDA torchvision does not load into a CPU torch), so it is not always installable. This processor is
transformers' own with the video half left out: the same image tokens, `image_grid_thw` and `mm_token_type_ids`
for pictures, and an error for videos. It saves under transformers' class name, so a machine with torchvision
loads a saved folder as the ordinary `Qwen2VLProcessor`.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin


class ImagesOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """`Qwen2VLProcessor` with an image processor and a tokenizer only (no `video_processor`)."""

    video_processor = None

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None,
                 **kwargs: Any) -> None:
        self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def __call__(self, *args: Any, videos: Any = None, **kwargs: Any) -> Any:
        if videos is not None:
            raise ValueError("videos need Qwen2-VL's video processor, which needs torchvision")
        return super().__call__(*args, **kwargs)


ImagesOnlyQwen2VLProcessor.__name__ = "Qwen2VLProcessor"  # what save_pretrained writes as processor_class


def load_images_only(source: str, local_files_only: bool) -> ImagesOnlyQwen2VLProcessor:
    """The processor of a Qwen2-VL folder (or cached hub id) built from its image processor and tokenizer."""
    images = Qwen2VLImageProcessorPil.from_pretrained(source, local_files_only=local_files_only)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return ImagesOnlyQwen2VLProcessor(images, tokenizer, chat_template=tokenizer.chat_template)
