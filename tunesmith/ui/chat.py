"""The chat pane's engine: OpenAI `/v1/chat/completions` semantics over a run, tuned or its base.

The pane posts `{"model": "tuned" | "base", "messages": [...], "max_tokens": N}` and gets a
`chat.completion` object back, the shape `tunesmith serve` answers with, so the pane needs no change when
the engine does. The dashboard's engine is `serve_chat.ServeEngine` (tunesmith serve's own code); this
module holds what every engine shares: the request's checks and the engine's protocol.

Anything with `complete(run_dir, which, messages, max_tokens) -> dict` is an engine
(`create_app(chat_engine=...)`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from tunesmith.data.images import IMAGE_PLACEHOLDER
from tunesmith.data.types import Message
from tunesmith.errors import UserError

ROLES = ("system", "user", "assistant")
WHICH = ("tuned", "base")


class ChatEngine(Protocol):
    def complete(self, run_dir: Path, which: str, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        """A chat.completion object answering `messages` with the run (`which`: tuned or base)."""
        ...


def check_messages(messages: Any) -> list[Message]:
    """The request's messages as typed Messages (an attached picture as `<image>`); a UserError naming the
    first bad one. Content is text, or OpenAI parts: text, and pictures as `data:image/...` URIs only (the
    pane reads a file the user picked; the server behind it checks and decodes the picture, and refuses it
    for a text model)."""
    if not isinstance(messages, list) or not messages:
        raise UserError("messages: give a non-empty list of {role, content}")
    typed = []
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), (str, list))):
            raise UserError(f"messages[{i}]: needs role ({', '.join(ROLES)}) and content text")
        content = m["content"]
        typed.append(Message(m["role"], content if isinstance(content, str) else _parts_text(content, i)))
    return typed


def _parts_text(parts: list[Any], i: int) -> str:
    texts = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
            continue
        url = part.get("image_url", {}).get("url") if kind == "image_url" and isinstance(part.get("image_url"), dict) else None
        if not isinstance(url, str) or not url[:11].lower().startswith("data:image/"):
            raise UserError(f"messages[{i}].content[{j}]: a part is {{type: text, text}} or {{type: image_url, "
                            "image_url: {url: data:image/...}}} (pictures are sent inline, never as a link or path)")
        texts.append(IMAGE_PLACEHOLDER)
    return "".join(texts)
