"""Reading a data row's fields: typed getters and the message lists every chat format shares.

Message lists are read the same way in every format: `{role, content}` (OpenAI) or `{from, value}`
(ShareGPT), with the role names of both conventions, content as a string or a list of parts. A text part
gives its text; an image part (OpenAI's `image_url`, TRL's `{"type": "image"}`) gives the image placeholder
at its place, and `data/image_rows.py` pairs the placeholders with the row's pictures.
"""

from __future__ import annotations

import json
from typing import Any

from tunesmith.data.images import IMAGE_PLACEHOLDER
from tunesmith.data.types import Message
from tunesmith.errors import suggestion

IMAGE_PART_TYPES: tuple[str, ...] = ("image_url", "image")
"""Content part types that stand for a picture: OpenAI's `image_url` (the reference inside the part) and
TRL's bare `image` (the reference in the row's `images` column)."""

ROLE_NAMES: dict[str, str] = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant", "function_call": "assistant",
    "tool": "tool", "observation": "tool", "function": "tool",
}
"""Role names found in the wild (OpenAI, ShareGPT, LLaMA-Factory) -> ours. A ShareGPT `function_call`
turn is the assistant calling a tool; `observation` is the tool's answer."""


class BadRow(Exception):
    """What is wrong with a row, before `parse_row` adds where the row is."""


def kind_name(value: Any) -> str:
    """The JSON name of a value's type, as the user sees it in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "text", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def field_value(row: dict[str, Any], name: str) -> Any:
    """A required field. A null counts as missing: `datasets` fills fields absent from a row with None."""
    value = row.get(name)
    if value is None:
        raise BadRow(f"missing field '{name}'")
    return value


def text_field(row: dict[str, Any], name: str, required: bool = True) -> str:
    value = field_value(row, name) if required else row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRow(f"field '{name}' should be text, got {kind_name(value)}")
    return value


def nonempty(text: str, name: str) -> str:
    if not text.strip():
        raise BadRow(f"field '{name}' is empty")
    return text


def content_text(value: Any, label: str) -> str:
    """A message's text: a string, or a list of parts joined as chat templates do; an image part becomes the
    image placeholder at its place (the reference itself is read by `data/image_rows.py`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in IMAGE_PART_TYPES:
                texts.append(IMAGE_PLACEHOLDER)
            elif kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                shown = kind if isinstance(part, dict) else kind_name(part)
                raise BadRow(f"{label}: only text and image content parts are supported, got '{shown}'")
        return "".join(texts)
    raise BadRow(f"{label}: content should be text, got {kind_name(value)}")


def _tool_calls_text(calls: Any, label: str) -> str:
    """OpenAI `tool_calls` as the text of the turn, one JSON call per line, in the same
    `{"name", "arguments"}` shape as a ShareGPT `function_call` turn, so both formats train alike."""
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise BadRow(f"{label}: tool_calls should be a list of objects, got {kind_name(calls)}")
    lines = []
    for call in calls:
        function = call.get("function") or call
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                pass  # keep the string as written
        lines.append(json.dumps({"name": function.get("name"), "arguments": arguments}, ensure_ascii=False))
    return "\n".join(lines)


def read_message(item: Any, label: str) -> Message:
    if not isinstance(item, dict):
        raise BadRow(f"{label} should be an object with role/content (or from/value), got {kind_name(item)}")
    role = item.get("role") if item.get("role") is not None else item.get("from")
    if not isinstance(role, str):
        raise BadRow(f"{label} has no 'role' (or 'from')")
    if role not in ROLE_NAMES:
        raise BadRow(f"{label}: unknown role '{role}'{suggestion(role, ROLE_NAMES)}; known: {', '.join(ROLE_NAMES)}")
    content = item.get("content") if item.get("content") is not None else item.get("value")
    if content is None and item.get("tool_calls"):
        return Message(ROLE_NAMES[role], _tool_calls_text(item["tool_calls"], label))
    if content is None:
        raise BadRow(f"{label} has no 'content' (or 'value')")
    return Message(ROLE_NAMES[role], content_text(content, label))


def read_messages(value: Any, name: str) -> tuple[Message, ...]:
    """A list of messages (a single message object counts as a list of one)."""
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise BadRow(f"field '{name}' should be a list of messages, got {kind_name(value)}")
    if not items:
        raise BadRow(f"field '{name}' is empty")
    return tuple(read_message(item, f"'{name}' turn {n}") for n, item in enumerate(items, 1))
