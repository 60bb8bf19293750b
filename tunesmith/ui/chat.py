"""The chat pane's engine: OpenAI `/v1/chat/completions` semantics over a run, tuned or its base.

The pane posts `{"model": "tuned" | "base", "messages": [...], "max_tokens": N}` and gets a
`chat.completion` object back, the shape `tunesmith serve` answers with, so the pane needs no change when
the engine does. The dashboard's engine is `serve_chat.ServeEngine` (tunesmith serve's own code);
`LocalEngine` here is the plain reference: the run loaded through `runs.load.load_target`, prompts rendered
with the run's chat template (`data.tokenize.tokenize_prompt`, as training saw them), greedy answers from
`evaluate.generate` stopped at the template's end of turn.

Anything with `complete(run_dir, which, messages, max_tokens) -> dict` is an engine
(`create_app(chat_engine=...)`).
"""

from __future__ import annotations

import threading
import time
import uuid
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


class LocalEngine:
    """Loads each (run, tuned|base) once, keeps the last few, answers one request at a time."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.loaded: dict[tuple[str, str], Any] = {}
        self.lock = threading.Lock()

    def complete(self, run_dir: Path, which: str, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        from tunesmith.data.tokenize import tokenize_prompt
        from tunesmith.evaluate.generate import generate

        if which not in WHICH:
            raise UserError(f"model: '{which}' is not one of {', '.join(WHICH)}")
        typed = check_messages(messages)
        with self.lock:
            loaded = self._load(run_dir, which)
            prompt = tokenize_prompt(loaded.tokenizer, typed)
            (answer,) = generate(loaded.model, loaded.tokenizer, [prompt], max_new_tokens=max_tokens,
                                 stop=[loaded.end_of_turn])
        completion_tokens = len(loaded.tokenizer(answer, add_special_tokens=False)["input_ids"])
        return completion(f"{run_dir.name}:{which}", answer.strip(), len(prompt), completion_tokens)

    def _load(self, run_dir: Path, which: str) -> Any:
        from tunesmith.runs.load import load_target
        from tunesmith.runs.targets import resolve_target

        key = (str(run_dir), which)
        if key not in self.loaded:
            target = resolve_target(str(run_dir))
            if len(self.loaded) >= self.keep:
                self.loaded.pop(next(iter(self.loaded)))
            self.loaded[key] = load_target(target.base() if which == "base" else target)
        return self.loaded[key]


def completion(model: str, text: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """An OpenAI chat.completion object holding one assistant message."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
