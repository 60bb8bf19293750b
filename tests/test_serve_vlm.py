"""Serving a vision-language model: the real server and the official `openai` client send `image_url` chats to
a tiny random LLaVA (a model folder and a LoRA run over it), and the answers equal the model's own greedy
answers to the same picture and question (vision/generate.py: the processor and `generate`, not the server)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.types import Conversation, Message
from tunesmith.serve.local import local_server
from tunesmith.serve.server import ServeOptions
from tunesmith.testing.shapes import draw_shape

openai = pytest.importorskip("openai")
KEY = "vlm-key"
TOKENS = 8


def _uri(colour: str, shape: str, seed: int = 0) -> str:
    import random

    buffer = io.BytesIO()
    draw_shape(colour, shape, rng=random.Random(seed)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _expected(model: Any, processor: Any, uri: str, question: str) -> str:
    from tunesmith.vision.generate import greedy_answers

    chat = Conversation((Message("user", "<image>" + question),), images=(uri,))
    return greedy_answers(model, processor, [chat], TOKENS)[0]


def _ask(client: Any, model: str, uri: str, question: str, **kw: Any) -> Any:
    return client.chat.completions.create(
        model=model, max_tokens=TOKENS, temperature=0,
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                               {"type": "text", "text": question}]}], **kw)


@pytest.fixture(scope="module")
def llava(tiny_llava: dict[str, Path]) -> dict[str, Path]:
    return tiny_llava


def test_an_image_chat_is_answered_as_the_model_answers_it(llava: dict[str, Path]) -> None:
    from tunesmith.adapters.build import load_adapter
    from tunesmith.models.load import load_model
    from tunesmith.vision.processor import load_processor

    processor = load_processor(str(llava["base"]))
    base = load_model(str(llava["base"]), dtype="fp32")
    pictures = [("red", "circle", "What is in the picture?"), ("blue", "square", "Which colour?")]
    want_base = [_expected(base, processor, _uri(c, s), q) for c, s, q in pictures]
    tuned = load_adapter(load_model(str(llava["base"]), dtype="fp32"), llava["run"] / "adapter")
    want_tuned = [_expected(tuned, processor, _uri(c, s), q) for c, s, q in pictures]
    assert want_base != want_tuned  # the adapter (and trained projector) changes what is said
    with local_server(ServeOptions([f"tuned={llava['run']}"], api_key=KEY)) as running:
        client = openai.OpenAI(base_url=running.url, api_key=KEY, max_retries=0)
        names = {m.id for m in client.models.list().data}
        assert names == {"tuned", "tiny-llava"}
        for (colour, shape, question), base_answer, tuned_answer in zip(pictures, want_base, want_tuned):
            got = _ask(client, "tiny-llava", _uri(colour, shape), question)
            assert got.choices[0].message.content.strip() == base_answer
            got = _ask(client, "tuned", _uri(colour, shape), question)
            assert got.choices[0].message.content.strip() == tuned_answer
            text_only = client.chat.completions.create(model="tuned", max_tokens=1,
                                                       messages=[{"role": "user", "content": question}])
            patches = (28 // 14) ** 2  # the tiny CLIP tower's image and patch sizes: one token per patch
            assert got.usage.prompt_tokens == text_only.usage.prompt_tokens + patches  # image tokens counted
        stream = _ask(client, "tuned", _uri("red", "circle"), "What is in the picture?", stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip() == want_tuned[0]


def test_image_and_text_requests_to_one_vlm_at_once(llava: dict[str, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with local_server(ServeOptions([str(llava["base"])], api_key=KEY)) as running:
        client = openai.OpenAI(base_url=running.url, api_key=KEY, max_retries=0)
        alone = [_ask(client, "tiny-llava", _uri(c, "circle"), "What?").choices[0].message.content
                 for c in ("red", "green", "blue")]
        with ThreadPoolExecutor(6) as pool:
            together = list(pool.map(lambda c: _ask(client, "tiny-llava", _uri(c, "circle"), "What?"),
                                     ("red", "green", "blue")))
            pool.submit(client.chat.completions.create, model="tiny-llava", max_tokens=2,
                        messages=[{"role": "user", "content": "hi"}]).result()
        assert [r.choices[0].message.content for r in together] == alone


def test_a_merged_vlm_folder_is_served_with_its_processor(llava: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from tunesmith.ship.merge import merge_run
    from tunesmith.vision.processor import load_processor

    merged = merge_run(llava["run"], tmp_path / "merged").out
    model = AutoModelForImageTextToText.from_pretrained(merged).eval()
    want = _expected(model, load_processor(str(merged)), _uri("yellow", "triangle"), "What is in the picture?")
    with local_server(ServeOptions([str(merged)], api_key=KEY)) as running:
        client = openai.OpenAI(base_url=running.url, api_key=KEY, max_retries=0)
        got = _ask(client, "merged", _uri("yellow", "triangle"), "What is in the picture?", n=2)
        assert [c.message.content.strip() for c in got.choices] == [want, want]


@pytest.mark.parametrize("family", ["idefics3", "qwen2_vl"])
def test_idefics3_and_qwen2_vl_models_are_answered_as_they_answer(tmp_path: Path, family: str) -> None:
    """Idefics3's pixels come per row of images (5-D, with `pixel_attention_mask`), Qwen2-VL's as patches with
    `image_grid_thw` and `mm_token_type_ids` (its pictures-only processor where torchvision is missing), unlike
    LLaVA's: the processor's output reaches generate as it is. (Idefics3's mask is all ones for unpadded
    pictures, so this does not tell whether the mask itself arrives.)"""
    from tunesmith.models.load import load_model
    from tunesmith.testing.vlm import save_tiny_vlm
    from tunesmith.vision.processor import load_processor

    folder = save_tiny_vlm(family, tmp_path / f"tiny-{family.replace('_', '-')}", seed=1)
    want = _expected(load_model(str(folder), dtype="fp32"), load_processor(str(folder)), _uri("blue", "circle"),
                     "Which shape?")
    with local_server(ServeOptions([str(folder)], api_key=KEY)) as running:
        client = openai.OpenAI(base_url=running.url, api_key=KEY, max_retries=0)
        got = _ask(client, folder.name, _uri("blue", "circle"), "Which shape?")
        assert got.choices[0].message.content.strip() == want


@pytest.mark.parametrize("kind", ["prefix", "prompt"])
def test_a_prompt_learning_adapter_on_a_vlm_answers_text_and_refuses_pictures(llava: dict[str, Path], kind: str,
                                                                            tmp_path: Path) -> None:
    """tunesmith refuses to train such a kind on a VLM (adapters/unit.py `reads_pictures`), but a PEFT folder
    made elsewhere may still be served: its picture requests get a 400 naming the kind and the kinds that read
    pictures (its stepwise decoding would drop the pixels), its text requests an answer."""
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    from tunesmith.models.load import load_model
    from tunesmith.vision.processor import load_processor

    config = (PrefixTuningConfig if kind == "prefix" else PromptTuningConfig)(num_virtual_tokens=4,
                                                                              task_type="CAUSAL_LM")
    folder = tmp_path / kind
    get_peft_model(load_model(str(llava["base"]), dtype="fp32"), config).save_pretrained(folder)
    load_processor(str(llava["base"])).save_pretrained(folder)
    with local_server(ServeOptions([f"{kind}={folder}"], api_key=KEY)) as running:
        client = openai.OpenAI(base_url=running.url, api_key=KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            _ask(client, kind, _uri("red", "circle"), "What?")
        assert f"is a {kind} adapter, which does not read pictures" in str(refused.value)
        assert "lora, qlora, dora or full" in str(refused.value)
        text = client.chat.completions.create(model=kind, max_tokens=2, messages=[{"role": "user", "content": "hi"}])
        assert text.choices[0].finish_reason in ("length", "stop")
