"""A LLaVA-style VLM whose language model is the real SmolLM2-135M-Instruct, for the slow end-to-end check.

No small pretrained VLM ships in a package here, so one is assembled: the language model and its tokenizer and
chat template come from the SmolLM2 GGUF fixture through tunesmith's own loading (de-quantized once into the
cache), one `<image>` token is added to the vocabulary, and a small SigLIP vision tower (48-pixel images, 8-pixel
patches: 36 image tokens; one encoder layer) and LLaVA's two-layer projector are initialised from config. The
result is a standard `LlavaForConditionalGeneration` folder with its `LlavaProcessor`, written once into the cache
(weights never committed) and reloaded by `AutoModelForImageTextToText` / `AutoProcessor`.

Why this tower: the tower is random, so what reaches the projector must keep shape where a per-patch MLP can find
it. The projector reads the patch embeddings (`vision_feature_layer=-2`, the layer before the last as LLaVA itself
takes), not the output of a random encoder layer, whose near-uniform attention mixes every patch with all the
others and blurs the edges that tell a circle from a square. And 48-pixel pictures in 36 patches keep more of the
64-pixel drawing than 32 pixels in 16. A stand-in for the projector (a per-patch MLP, then mean and max over the
patches, 150 steps of 8 as training takes) names the held-out shape 88-93% of the time from 16 patch embeddings
(32 px), 93-99% from 36 (48 px), 73-87% from the last of two random layers (32 px, the earlier recipe).

    python -m tunesmith.testing.smol_vlm ../shared/fixtures/smollm2-135m-instruct runs   # model + shapes data
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

IMAGE_SIZE, PATCH = 48, 8
IMAGE_TOKEN = "<image>"
_DONE = ".complete"
_VERSION = "v3"  # bump when the recipe below changes: the cached folder's name carries it


def _template(tokenizer: object) -> str:
    """SmolLM2's ChatML (its default system prompt included), taught to render content parts: text as is, an image
    part as `<image>`. For string contents it renders exactly as SmolLM2's own template, which is checked."""
    content = ("{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in "
               "message['content'] %}{% if part['type'] == 'image' %}" + IMAGE_TOKEN + "{% elif part['type'] == "
               "'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}")
    template = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                "<|im_end|>\\n' }}{% endif %}<|im_start|>{{ message['role'] }}\n" + content + "<|im_end|>\n"
                "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    ours = tokenizer.apply_chat_template(chat, chat_template=template, tokenize=False)  # type: ignore[attr-defined]
    if ours != tokenizer.apply_chat_template(chat, tokenize=False):  # type: ignore[attr-defined]
        raise ValueError("SmolLM2's chat template changed; update the image-aware copy in testing/smol_vlm.py")
    return template


def _build(gguf: str, out: Path, seed: int) -> None:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, SiglipImageProcessorPil

    from tunesmith.models.load import load_model, load_tokenizer

    tokenizer = load_tokenizer(gguf)
    text = load_model(gguf, dtype="fp32", tokenizer=tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    text.resize_token_embeddings(len(tokenizer))
    tokenizer.chat_template = _template(tokenizer)
    config = LlavaConfig(
        text_config=text.config.to_dict(),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=128, intermediate_size=256,
                           num_hidden_layers=1, num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_layer=-2,
        vision_feature_select_strategy="full", projector_hidden_act="gelu",
        tie_word_embeddings=text.config.tie_word_embeddings,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    model.model.language_model.load_state_dict(text.model.state_dict())
    model.lm_head.load_state_dict(text.lm_head.state_dict())
    model.generation_config = text.generation_config
    images = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=PATCH,
                               vision_feature_select_strategy="full", num_additional_image_tokens=0,
                               chat_template=tokenizer.chat_template)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def smollm2_llava(fixture: str | Path, cache_root: Path | None = None, seed: int = 0) -> Path:
    """The SmolLM2 LLaVA folder built from the GGUF fixture in `fixture` (a folder or .gguf file), made on first use
    (atomically) under `cache_root`, default `$TUNESMITH_CACHE/vlm` beside the GGUF copies."""
    from tunesmith.data.cache import cache_dir
    from tunesmith.gguf.source import find_gguf

    gguf = find_gguf(str(fixture))
    if gguf is None:
        raise FileNotFoundError(f"no .gguf file in {fixture}")
    root = cache_root or cache_dir().parent / "vlm"
    target = root / f"smollm2-llava-{_VERSION}-seed{seed}"
    if (target / _DONE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        _build(str(gguf), staging, seed)
        (staging / _DONE).write_text("")
        if target.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    """`python -m tunesmith.testing.smol_vlm [FIXTURE] [OUT]`: the SmolLM2 LLaVA under OUT/vlm and the shapes task
    (300 train, 100 held-out rows) under OUT/shapes: what recipes/sft-lora-vlm-shapes.yaml trains on."""
    import sys

    from tunesmith.testing.shapes import write_shapes

    args = list(sys.argv[1:] if argv is None else argv)
    fixture = args[0] if args else "../shared/fixtures/smollm2-135m-instruct"
    out = Path(args[1] if len(args) > 1 else "runs")
    print(smollm2_llava(fixture, cache_root=out / "vlm"))
    print(*write_shapes(out / "shapes", 300, 100), sep="\n")


if __name__ == "__main__":
    main()
