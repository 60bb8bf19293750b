"""The dashboard's chat with a picture: the pane posts an OpenAI image_url part (a data: URI) to the same chat
path; a vision-language run answers it as the model does (vision/generate.py), a text run refuses it with
serve's "this model does not take images", and a link or a path instead of inline data is refused before any
model sees it. The dashboard's token guard covers the route as every other action."""

from __future__ import annotations

import base64
import io
import random
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from ui_fixtures import BROWSER_TOKEN, local_client, tiny_model_and_data, tiny_recipe

from tunesmith.data.types import Conversation, Message
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.shapes import draw_shape
from tunesmith.train.loop import train
from tunesmith.ui.access import Access
from tunesmith.ui.app import create_app
from tunesmith.ui.headless import chromium, missing_browser, open_with_token, serve_in_thread


@pytest.fixture(scope="module")
def runs(tiny_llava: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The dashboard's runs folder: a copy of the VLM run (the dashboard follows no link out of its folder)
    and a text run."""
    root = tmp_path_factory.mktemp("ui-vlm")
    shutil.copytree(tiny_llava["run"], root / "runs" / "vlm")
    model, data = tiny_model_and_data(root)
    train(recipe_from_dict(tiny_recipe("text", model, data, root / "runs", lr=1e-3)))
    return {**tiny_llava, "runs": root / "runs", "run": root / "runs" / "vlm"}


def _picture() -> str:
    buffer = io.BytesIO()
    draw_shape("green", "triangle", rng=random.Random(5)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _ask(client: TestClient, run: str, url: str, model: str = "tuned") -> object:
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": "What is in the picture?"}]}]
    return client.post(f"/api/runs/{run}/v1/chat/completions", json={"model": model, "messages": messages,
                                                                      "max_tokens": 6})


def test_a_picture_in_the_chat_is_answered_by_a_vlm_run(runs: dict[str, Path]) -> None:
    from tunesmith.adapters.build import load_adapter
    from tunesmith.models.load import load_model
    from tunesmith.vision.generate import greedy_answers
    from tunesmith.vision.processor import load_processor

    client = local_client(create_app(runs["runs"]))
    picture = _picture()
    chat = Conversation((Message("user", "<image>What is in the picture?"),), images=(picture,))
    processor = load_processor(str(runs["base"]))
    for which, model in (("tuned", load_adapter(load_model(str(runs["base"]), dtype="fp32"), runs["run"] / "adapter")),
                         ("base", load_model(str(runs["base"]), dtype="fp32"))):
        reply = _ask(client, "vlm", picture, which)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == greedy_answers(model, processor, [chat], 6)[0]


def test_a_text_run_refuses_the_picture_and_links_are_refused(runs: dict[str, Path]) -> None:
    client = local_client(create_app(runs["runs"]))
    refused = _ask(client, "text", _picture())
    assert refused.status_code == 400 and "this model does not take images" in refused.json()["error"]
    for url in ("https://example.com/cat.png", str(runs["data"]), "file:///etc/passwd", "data:text/html,<b>"):
        reply = _ask(client, "vlm", url)
        assert reply.status_code == 400 and "pictures are sent inline" in reply.json()["error"], url


def test_the_picture_chat_needs_the_token(runs: dict[str, Path]) -> None:
    guarded = local_client(create_app(runs["runs"], access=Access.build("127.0.0.1", 7860, "s3cret")))
    assert _ask(guarded, "vlm", _picture()).status_code == 401


@pytest.mark.skipif(missing_browser() is not None, reason=f"headless browser unavailable: {missing_browser()}")
def test_the_pane_attaches_a_picture_in_a_headless_browser(runs: dict[str, Path], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    picture = tmp_path / "green-triangle.png"
    picture.write_bytes(base64.b64decode(_picture().partition(",")[2]))
    url, server = serve_in_thread(create_app(runs["runs"], access=Access.build("127.0.0.1", None, BROWSER_TOKEN)))
    driver = chromium()
    try:
        open_with_token(driver, url, BROWSER_TOKEN)
        wait = WebDriverWait(driver, 120)
        answers = {}
        for run in ("vlm", "text"):
            driver.get("about:blank")
            driver.get(url + f"#/run/{run}")
            wait.until(lambda d: d.find_elements(By.ID, "chat-image"))
            driver.find_element(By.ID, "chat-max-tokens").clear()
            driver.find_element(By.ID, "chat-max-tokens").send_keys("6")
            driver.find_element(By.ID, "chat-image").send_keys(str(picture))
            driver.find_element(By.ID, "chat-input").send_keys("What is in the picture?")
            driver.find_element(By.ID, "chat-send").click()
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chat-tuned .bubble.assistant, #chat-tuned .error"))
            assert driver.find_elements(By.CSS_SELECTOR, "#chat-tuned .bubble.user img.chat-picture")
            answers[run] = driver.find_element(By.CSS_SELECTOR, "#chat-tuned .bubble.assistant, #chat-tuned .error").text
        direct = _ask(local_client(create_app(runs["runs"])), "vlm", _picture()).json()
        assert answers["vlm"] == (direct["choices"][0]["message"]["content"] or "(empty answer)")
        assert "this model does not take images" in answers["text"]
    finally:
        driver.quit()
        server.should_exit = True
