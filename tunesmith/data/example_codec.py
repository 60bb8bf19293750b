"""Examples <-> plain JSON, so the prepared-data store keeps them as data and never as code.

The pickle cache this replaces could run code named in its file; JSON can only ever give back strings,
numbers, lists and dicts, which `decode` turns into our frozen example types by hand. A `Prompt`'s extra
columns (`fields`, the reward functions' inputs) go through as JSON values; a value JSON cannot hold makes
`encode` raise `TypeError`, and the caller then does without a store (a miss costs only time).
"""

from __future__ import annotations

import json
from typing import Any

from tunesmith.data.types import Conversation, Example, Message, Preference, Prompt, Text, Unpaired


def _messages(messages: tuple[Message, ...]) -> list[list[str]]:
    return [[m.role, m.content] for m in messages]


def _back(items: list[list[str]]) -> tuple[Message, ...]:
    return tuple(Message(role, content) for role, content in items)  # type: ignore[arg-type]


def encode(example: Example) -> bytes:
    """One example as one line of UTF-8 JSON (no newline inside: JSON escapes it)."""
    item: dict[str, Any]
    if isinstance(example, Text):
        item = {"t": "text", "s": example.text}
    elif isinstance(example, Conversation):
        item = {"t": "chat", "m": _messages(example.messages)}
        if example.images:
            item["i"] = list(example.images)
    elif isinstance(example, Preference):
        item = {"t": "pref", "p": _messages(example.prompt), "c": _messages(example.chosen),
                "r": _messages(example.rejected)}
        if example.images:
            item["i"] = list(example.images)
    elif isinstance(example, Unpaired):
        item = {"t": "kto", "p": _messages(example.prompt), "c": _messages(example.completion),
                "d": example.desirable}
    elif isinstance(example, Prompt):
        item = {"t": "prompt", "p": _messages(example.prompt), "f": example.fields}
    else:
        raise TypeError(f"not an example: {type(example).__name__}")
    return json.dumps(item, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"


_DECODERS: dict[str, Any] = {
    "text": lambda item: Text(item["s"]),
    "chat": lambda item: Conversation(_back(item["m"]), tuple(str(ref) for ref in item.get("i", ()))),
    "pref": lambda item: Preference(_back(item["p"]), _back(item["c"]), _back(item["r"]),
                                    tuple(str(ref) for ref in item.get("i", ()))),
    "kto": lambda item: Unpaired(_back(item["p"]), _back(item["c"]), bool(item["d"])),
    "prompt": lambda item: Prompt(_back(item["p"]), dict(item["f"])),
}
"""Each tag `encode` writes, and how its line becomes the example again."""


def decode(line: bytes) -> Example:
    """The example `encode` wrote as `line`."""
    item = json.loads(line)
    decoder = _DECODERS.get(item["t"])
    if decoder is None:
        raise ValueError(f"unknown example kind {item['t']!r} in the data store")
    return decoder(item)
