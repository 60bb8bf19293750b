"""Pictures in chat requests: OpenAI image_url parts into the data contract, data: URIs capped, files only from
inside --image-root (no `..`, no symlink out), remote URLs refused; through the real server and the official
`openai` client, a text model answers 400 "this model does not take images" and a model that takes images
gets the pictures, decoded once, passed to its engine job."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tunesmith.data.images import IMAGE_PLACEHOLDER
from tunesmith.data.types import Message
from tunesmith.serve import images as serve_images
from tunesmith.serve.errors import ApiError
from tunesmith.serve.images import chat_input
from tunesmith.serve.local import local_server
from tunesmith.serve.schemas import ChatMessage
from tunesmith.serve.server import ServeOptions
from tunesmith.testing.tiny import save_tiny

openai = pytest.importorskip("openai")
KEY = "images-key"


def _png_bytes(size: tuple[int, int] = (6, 4), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _parts(*urls: str, text: str = "What colour?") -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": u}} for u in urls]


def _messages(*urls: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content=_parts(*urls))]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "red.png").write_bytes(_png_bytes())
    (tmp_path / "secret.png").write_bytes(_png_bytes(color="blue"))
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    return folder


def test_parts_become_placeholders_and_references(root: Path) -> None:
    inline = _uri(_png_bytes((3, 3)))
    given = chat_input(_messages(inline, "sub/red.png", f"file://{root}/sub/red.png"), root)
    assert given.messages == (Message("system", "Be brief."),
                              Message("user", "What colour?" + IMAGE_PLACEHOLDER * 3))
    assert given.images[0] == inline
    local = base64.b64decode(given.images[1].partition(",")[2])
    assert local == (root / "sub" / "red.png").read_bytes() and given.images[2] == given.images[1]


@pytest.mark.parametrize("url, message", [
    ("https://example.com/a.png", "remote image URLs are not fetched"),
    ("http://127.0.0.1:1/a.png", "remote image URLs are not fetched"),
    ("../secret.png", "leads outside the server's image folder"),
    ("sub/../../secret.png", "leads outside the server's image folder"),
    ("link.png", "leads outside the server's image folder"),
    ("{tmp}/secret.png", "leads outside the server's image folder"),
    ("file://{tmp}/secret.png", "leads outside the server's image folder"),
    ("file://otherhost/x.png", "a file: URL must name this machine"),
    ("nowhere.png", "no such image file under the image folder"),
    ("broken.png", "the image cannot be used"),
    ("data:image/png;base64,AAAA", "the image cannot be used"),
])
def test_unusable_pictures_are_400_naming_the_part(root: Path, url: str, message: str) -> None:
    with pytest.raises(ApiError) as err:
        chat_input(_messages(_uri(_png_bytes()), url.format(tmp=root.parent)), root)
    assert err.value.status == 400 and message in err.value.message
    assert err.value.param == "messages.1.content.2.image_url.url"


def test_files_need_an_image_root_and_sizes_are_capped(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ApiError, match="local image files are not served"):
        chat_input(_messages("sub/red.png"), None)
    assert chat_input(_messages(_uri(_png_bytes())), None).images  # data: URIs need no folder
    monkeypatch.setattr(serve_images, "MAX_REQUEST_IMAGE_BYTES", 20)
    for url in (_uri(_png_bytes()), "sub/red.png"):
        with pytest.raises(ApiError, match="the image is over"):
            chat_input(_messages(url), root)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("images") / "base", vocab_size=300)


def _ask(client: Any, *urls: str, n: int = 1) -> Any:
    return client.chat.completions.create(model="base", max_tokens=2, temperature=0, n=n,
                                          messages=[{"role": "user", "content": _parts(*urls)}])


def test_text_model_refuses_images_through_the_api(base: Path, root: Path) -> None:
    with local_server(ServeOptions([str(base)], api_key=KEY, image_root=root)) as running:
        client = openai.OpenAI(base_url=running.url, api_key=KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            _ask(client, _uri(_png_bytes()))
        assert "this model does not take images" in err.value.message
        assert err.value.code == "images_not_supported" and err.value.param == "messages"
        assert client.chat.completions.create(model="base", max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "text", "text": "Once upon"}]}]).choices  # text parts still work


def test_image_model_gets_the_pictures_decoded_once_and_refusals_are_400(root: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine job carries the pictures serve/images.py decoded: Pillow opens each picture once per request
    (the check, the prompt's token count and the batch's pixel inputs all read that one decoding), n=2 included."""
    from tunesmith.testing.vlm import save_tiny_vlm

    vlm = save_tiny_vlm("llava", root.parent / "base")  # served as "base", like the text model above
    with local_server(ServeOptions([str(vlm)], api_key=KEY, image_root=root)) as running:
        jobs = []
        submit = running.engine.submit
        running.engine.submit = lambda job: (jobs.append(job), submit(job))[1]  # type: ignore[method-assign]
        client = openai.OpenAI(base_url=running.url, api_key=KEY, max_retries=0)
        opened = []
        real_open = Image.open
        monkeypatch.setattr(Image, "open", lambda *a, **k: (opened.append(1), real_open(*a, **k))[1])
        inline = _uri(_png_bytes((5, 5), color="green"))
        assert len(_ask(client, inline, "sub/red.png", n=2).choices) == 2
        assert len(opened) == 2  # one decoding per picture
        assert [picture.getpixel((0, 0)) for picture in jobs[-1].images] == [(0, 128, 0), (255, 0, 0)]
        assert jobs[-1].images[1].size == (6, 4)  # the file's own picture (its bytes, read under the check)
        for url, message in (("https://example.com/cat.png", "remote image URLs are not fetched"),
                             ("../secret.png", "outside the server's image folder"),
                             ("link.png", "outside the server's image folder")):
            with pytest.raises(openai.BadRequestError) as err:
                _ask(client, url)
            assert message in err.value.message and err.value.param == "messages.0.content.1.image_url.url"
        assert len(jobs) == 1
