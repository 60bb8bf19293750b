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

from tunesmith.data.types import Message
from tunesmith.errors import UserError

ROLES = ("system", "user", "assistant")
WHICH = ("tuned", "base")


class ChatEngine(Protocol):
    def complete(self, run_dir: Path, which: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        """A chat.completion object answering `messages` with the run (`which`: tuned or base)."""
        ...


def check_messages(messages: Any) -> list[Message]:
    """The request's messages as typed Messages; a UserError naming the first bad one."""
    if not isinstance(messages, list) or not messages:
        raise UserError("messages: give a non-empty list of {role, content}")
    typed = []
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)):
            raise UserError(f"messages[{i}]: needs role ({', '.join(ROLES)}) and content text")
        typed.append(Message(m["role"], m["content"]))
    return typed
