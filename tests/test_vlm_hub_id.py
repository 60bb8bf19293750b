"""A vision-language model named by hub id (`org/name`), resolved offline from the local Hugging Face cache: a
tiny LLaVA written into a temporary hub cache (huggingface_hub's layout: `models--org--name/snapshots/<rev>/`
and `refs/main`) loads as a VLM, with its processor, and `serve` answers a picture as the model does."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pytest

from tunesmith.data.types import Conversation, Message
from tunesmith.testing.shapes import draw_shape
from tunesmith.testing.vlm import save_tiny_vlm

openai = pytest.importorskip("openai")
HUB_ID = "tiny-org/tiny-llava"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cached_vlm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """HUB_ID, present only in a fresh hub cache that huggingface_hub and transformers read; the hub offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    shutil.copytree(save_tiny_vlm("llava", tmp_path / "made", seed=2), repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return HUB_ID


def _uri() -> str:
    buffer = io.BytesIO()
    draw_shape("red", "circle").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_cached_vlm_hub_id_loads_as_a_vlm_and_serves_pictures(cached_vlm: str) -> None:
    from tunesmith.models.load import load_model
    from tunesmith.serve.local import local_server
    from tunesmith.serve.server import ServeOptions
    from tunesmith.vision.generate import greedy_answers
    from tunesmith.vision.processor import load_processor

    model = load_model(cached_vlm, dtype="fp32")
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    processor = load_processor(cached_vlm)
    chat = Conversation((Message("user", "<image>What is in the picture?"),), images=(_uri(),))
    want = greedy_answers(model, processor, [chat], 8)[0]
    with local_server(ServeOptions([f"tiny={cached_vlm}"], api_key="k")) as running:
        client = openai.OpenAI(base_url=running.url, api_key="k", max_retries=0)
        got = client.chat.completions.create(model="tiny", max_tokens=8, temperature=0, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _uri()}},
                                         {"type": "text", "text": "What is in the picture?"}]}])
    assert got.choices[0].message.content.strip() == want
