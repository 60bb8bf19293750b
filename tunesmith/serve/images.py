"""Pictures in a chat request: OpenAI `image_url` parts made into the data contract (`<image>` in the message
text where each picture sits, the pictures in that order), checked at the boundary.

A request is hostile input, loopback or not (a web page can post to a local server), so:
  * an `http(s)` URL is refused 400: the server never reaches the network because a request says so;
  * a `data:` URI is taken up to `MAX_REQUEST_IMAGE_BYTES` decoded;
  * a local path or `file://` URL is read only when the server was started with an image folder
    (`--image-root`), and only from inside it: the path is resolved with its symlinks and must land under the
    folder, so neither `..` nor a symlink leads out; the file is opened without following a final symlink.
Every picture is decoded whole here, once (Pillow's pixel bound on), so a corrupt one is the request's 400, not
a 500 for the batch it would join; the decoded picture is what the processor later reads (serve/vision.py), so
nothing decodes it again and nothing reads a checked path again.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tunesmith.data.images import IMAGE_PLACEHOLDER, ImageError, is_remote, open_image
from tunesmith.data.types import Message
from tunesmith.serve.errors import ApiError
from tunesmith.serve.schemas import ChatMessage, ImageUrlPart

MAX_REQUEST_IMAGE_BYTES = 8 * 1024 * 1024
"""The largest picture a request may send or name (8 MiB encoded)."""
MAX_REQUEST_IMAGES = 16
"""Pictures one request may carry."""


@dataclass(frozen=True)
class ChatInput:
    """A chat request's messages in the data contract's form: `images[k]` sits at the k-th `<image>`, and
    `pictures[k]` is that image decoded (RGB PIL images, what the model's processor reads)."""

    messages: tuple[Message, ...]
    images: tuple[str, ...] = ()
    pictures: tuple[Any, ...] = ()


def has_images(messages: list[ChatMessage]) -> bool:
    """Whether any message holds an image part (checked before any picture is read)."""
    return any(isinstance(part, ImageUrlPart) for m in messages if isinstance(m.content, list) for part in m.content)


def chat_input(messages: list[ChatMessage], image_root: Path | None) -> ChatInput:
    """The request's messages with each `image_url` part replaced by `<image>`, and its pictures checked and
    read; raises ApiError(400) naming the part (`messages.I.content.J.image_url.url`) that cannot be used."""
    out: list[Message] = []
    images: list[str] = []
    pictures: list[Any] = []
    for i, message in enumerate(messages):
        role = "system" if message.role == "developer" else message.role
        if not isinstance(message.content, list):
            out.append(Message(role, message.content or ""))
            continue
        texts = []
        for j, part in enumerate(message.content):
            if isinstance(part, ImageUrlPart):
                if len(images) == MAX_REQUEST_IMAGES:
                    raise ApiError(400, f"at most {MAX_REQUEST_IMAGES} images a request", param="messages")
                uri, picture = request_image(part.image_url.url, image_root, f"messages.{i}.content.{j}.image_url.url")
                images.append(uri)
                pictures.append(picture)
                texts.append(IMAGE_PLACEHOLDER)
            else:
                texts.append(part.text)
        out.append(Message(role, "".join(texts)))
    return ChatInput(tuple(out), tuple(images), tuple(pictures))


def request_image(url: str, image_root: Path | None, param: str) -> tuple[str, Any]:
    """One picture as a `data:` URI and decoded (RGB), after every check of this module."""
    if is_remote(url):
        raise ApiError(400, "remote image URLs are not fetched by this server; send the image inline as a "
                       "data: URI (data:image/png;base64,...)", param=param)
    if url[:5].lower() == "data:":
        if len(url) > MAX_REQUEST_IMAGE_BYTES * 4 // 3 + 64:
            raise ApiError(400, f"the image is over {MAX_REQUEST_IMAGE_BYTES // 2**20} MiB", param=param)
        return url, _decode(url, param)
    data = _local_bytes(url, image_root, param)
    uri = "data:image;base64," + base64.b64encode(data).decode("ascii")
    return uri, _decode(uri, param)


def _local_bytes(url: str, image_root: Path | None, param: str) -> bytes:
    if image_root is None:
        raise ApiError(400, "local image files are not served: send the image as a data: URI, or start the server "
                       "with --image-root FOLDER to allow files from that folder", param=param)
    if url[:5].lower() == "file:":
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ApiError(400, "a file: URL must name this machine", param=param)
        url = unquote(parsed.path)
    if "\x00" in url or not url.strip():
        raise ApiError(400, "the image path is empty or holds a NUL character", param=param)
    root = image_root.resolve()
    path = Path(url) if Path(url).is_absolute() else root / url
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise ApiError(400, "no such image file under the image folder", param=param) from None
    if not real.is_relative_to(root):
        raise ApiError(400, "the image path leads outside the server's image folder", param=param)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_REQUEST_IMAGE_BYTES + 1)
    except OSError:
        raise ApiError(400, "the image file cannot be read", param=param) from None
    if len(data) > MAX_REQUEST_IMAGE_BYTES:
        raise ApiError(400, f"the image is over {MAX_REQUEST_IMAGE_BYTES // 2**20} MiB", param=param)
    return data


def _decode(uri: str, param: str) -> Any:
    try:
        return open_image(uri)
    except ImageError as exc:
        raise ApiError(400, f"the image cannot be used: {str(exc)[:200]}", param=param) from None
