"""Map one data row (a dict) to one internal example, whatever the file's format.

Recipes name a format (`data.format: alpaca`) or say `auto`; `FORMATS` is the one registry of those
names, and its order is the order in which `detect_format` tries them (the most specific fields first,
so an Alpaca dump that also carries a rendered `text` column is still Alpaca). Every problem in a row
raises `DataError("file:line: what is wrong")`, so the user can open the file at that line.

Message lists are read the same way in every format: `{role, content}` (OpenAI) or `{from, value}`
(ShareGPT), with the role names of both conventions, content as a string or a list of text parts.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunesmith.data.types import Conversation, Example, Message, Preference, Prompt, Text, Unpaired
from tunesmith.errors import DataError, UserError, suggestion

if TYPE_CHECKING:  # importing loading would import `datasets`, slow and not needed to parse
    from tunesmith.data.loading import Row

logger = logging.getLogger(__name__)

DETECT_SAMPLE = 50
"""How many leading rows `detect_format` looks at."""

ROLE_NAMES: dict[str, str] = {
    "system": "system", "developer": "system",
    "user": "user", "human": "user",
    "assistant": "assistant", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant", "function_call": "assistant",
    "tool": "tool", "observation": "tool", "function": "tool",
}
"""Role names found in the wild (OpenAI, ShareGPT, LLaMA-Factory) -> ours. A ShareGPT `function_call`
turn is the assistant calling a tool; `observation` is the tool's answer."""


class _Bad(Exception):
    """What is wrong with a row, before `parse_row` adds where the row is."""


# ---- field readers ----------------------------------------------------------------------------


def _kind(value: Any) -> str:
    """The JSON name of a value's type, as the user sees it in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "text", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _get(row: dict[str, Any], name: str) -> Any:
    """A required field. A null counts as missing: `datasets` fills fields absent from a row with None."""
    value = row.get(name)
    if value is None:
        raise _Bad(f"missing field '{name}'")
    return value


def _text(row: dict[str, Any], name: str, required: bool = True) -> str:
    value = _get(row, name) if required else row.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(f"field '{name}' should be text, got {_kind(value)}")
    return value


def _nonempty(text: str, name: str) -> str:
    if not text.strip():
        raise _Bad(f"field '{name}' is empty")
    return text


def _content(value: Any, label: str) -> str:
    """A message's text: a string, or a list of `{type: "text", text}` parts joined as chat templates do."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                shown = part.get("type") if isinstance(part, dict) else _kind(part)
                raise _Bad(f"{label}: only text content parts are supported, got '{shown}'")
            texts.append(part["text"])
        return "".join(texts)
    raise _Bad(f"{label}: content should be text, got {_kind(value)}")


def _tool_calls_text(calls: Any, label: str) -> str:
    """OpenAI `tool_calls` as the text of the turn, one JSON call per line, in the same
    `{"name", "arguments"}` shape as a ShareGPT `function_call` turn, so both formats train alike."""
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise _Bad(f"{label}: tool_calls should be a list of objects, got {_kind(calls)}")
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


def _message(item: Any, label: str) -> Message:
    if not isinstance(item, dict):
        raise _Bad(f"{label} should be an object with role/content (or from/value), got {_kind(item)}")
    role = item.get("role") if item.get("role") is not None else item.get("from")
    if not isinstance(role, str):
        raise _Bad(f"{label} has no 'role' (or 'from')")
    if role not in ROLE_NAMES:
        raise _Bad(f"{label}: unknown role '{role}'{suggestion(role, ROLE_NAMES)}; known: {', '.join(ROLE_NAMES)}")
    content = item.get("content") if item.get("content") is not None else item.get("value")
    if content is None and item.get("tool_calls"):
        return Message(ROLE_NAMES[role], _tool_calls_text(item["tool_calls"], label))
    if content is None:
        raise _Bad(f"{label} has no 'content' (or 'value')")
    return Message(ROLE_NAMES[role], _content(content, label))


def _messages(value: Any, name: str) -> tuple[Message, ...]:
    """A list of messages (a single message object counts as a list of one)."""
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise _Bad(f"field '{name}' should be a list of messages, got {_kind(value)}")
    if not items:
        raise _Bad(f"field '{name}' is empty")
    return tuple(_message(item, f"'{name}' turn {n}") for n, item in enumerate(items, 1))


def _turns(row: dict[str, Any], name: str, role: str) -> tuple[Message, ...]:
    """A field that is either plain text (one turn of `role`) or a message list."""
    value = _get(row, name)
    return (Message(role, value),) if isinstance(value, str) else _messages(value, name)


def _response(row: dict[str, Any], name: str) -> tuple[Message, ...]:
    """An answer field: text or messages ending in a non-empty assistant turn."""
    return _answer(_turns(row, name, "assistant"), name)


def _answer(turns: tuple[Message, ...], name: str) -> tuple[Message, ...]:
    if turns[-1].role != "assistant":
        raise _Bad(f"field '{name}' should end with an assistant turn, not {turns[-1].role}")
    if not turns[-1].content.strip():
        raise _Bad(f"field '{name}' has an empty response")
    return turns


def _trained(messages: tuple[Message, ...]) -> Conversation:
    """A conversation for SFT: it must contain something to learn, a non-empty assistant turn."""
    answers = [m for m in messages if m.role == "assistant"]
    if not answers:
        raise _Bad("the conversation has no assistant turn, so there is nothing to train on")
    if not answers[-1].content.strip():
        raise _Bad("the last assistant turn is empty")
    return Conversation(messages)


# ---- one parser per format ------------------------------------------------------------------------


def _alpaca(row: dict[str, Any]) -> Conversation:
    instruction = _text(row, "instruction")
    extra = _text(row, "input", required=False)
    output = _nonempty(_text(row, "output"), "output")
    system = _text(row, "system", required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    head = (Message("system", system),) if system.strip() else ()
    return Conversation(head + (Message("user", user), Message("assistant", output)))


def _sharegpt_turns(row: dict[str, Any]) -> tuple[Message, ...]:
    """`conversations`, with the top-level `system` and `tools` fields folded into one system turn
    (tools as `Available tools:\\n<tools>`), since our templates render a single system prompt."""
    turns = list(_messages(_get(row, "conversations"), "conversations"))
    inner = turns.pop(0).content if turns and turns[0].role == "system" else ""
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, str):
        tools = json.dumps(tools, ensure_ascii=False)
    tools_block = f"Available tools:\n{tools.strip()}" if tools and tools.strip() not in ("", "[]", "{}") else ""
    system = "\n\n".join(p for p in (_text(row, "system", required=False), inner, tools_block) if p.strip())
    return ((Message("system", system),) if system else ()) + tuple(turns)


def _sharegpt(row: dict[str, Any]) -> Conversation:
    return _trained(_sharegpt_turns(row))


def _openai_messages(row: dict[str, Any]) -> Conversation:
    conv = _trained(_messages(_get(row, "messages"), "messages"))
    images = row.get("images") or ()  # TRL's column: references in placeholder order (data/images.py)
    return Conversation(conv.messages, tuple(str(ref) for ref in images)) if images else conv


def _prompt_completion(row: dict[str, Any]) -> Conversation:
    return _trained(_turns(row, "prompt", "user") + _response(row, "completion"))


def _text_row(row: dict[str, Any]) -> Text:
    return Text(_nonempty(_text(row, "text"), "text"))


def _transcript(row: dict[str, Any], name: str) -> tuple[Message, ...]:
    """A full chat in one field: an Anthropic HH string `"\\n\\nHuman: …\\n\\nAssistant: …"` or messages."""
    value = _get(row, name)
    if not isinstance(value, str):
        return _messages(value, name)
    pieces = value.split("\n\nHuman:")
    if pieces[0].strip() or len(pieces) < 2:
        raise _Bad(
            f"field '{name}' is plain text but there is no 'prompt' or 'conversations' field; without one it "
            "must be a whole transcript starting with '\\n\\nHuman:' (Anthropic HH style)"
        )
    turns: list[Message] = []
    for piece in pieces[1:]:
        human, *answers = piece.split("\n\nAssistant:")
        turns.append(Message("user", human.strip()))
        turns += [Message("assistant", answer.strip()) for answer in answers]
    return tuple(turns)


def _preference(row: dict[str, Any]) -> Preference:
    """Explicit prompt (`prompt`, or ShareGPT `conversations`) with chosen/rejected answers; or, with
    neither, two whole transcripts whose prompt is everything before their final assistant turn."""
    if row.get("prompt") is not None or row.get("conversations") is not None:
        prompt = _turns(row, "prompt", "user") if row.get("prompt") is not None else _sharegpt_turns(row)
        return Preference(prompt, _response(row, "chosen"), _response(row, "rejected"))
    chosen = _answer(_transcript(row, "chosen"), "chosen")
    rejected = _answer(_transcript(row, "rejected"), "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise _Bad("'chosen' and 'rejected' differ before their last assistant turn, so they share no prompt")
    if not chosen[:-1]:
        raise _Bad("'chosen' and 'rejected' hold only an answer; add the prompt turns or a 'prompt' field")
    return Preference(chosen[:-1], chosen[-1:], rejected[-1:])


def _kto(row: dict[str, Any]) -> Unpaired:
    label = _get(row, "label")
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        label = label.strip().lower() == "true"  # CSV cells are text
    if not isinstance(label, bool):
        raise _Bad(f"field 'label' should be true or false, got {_kind(label)} {label!r}")
    return Unpaired(_turns(row, "prompt", "user"), _response(row, "completion"), label)


def _prompt(row: dict[str, Any]) -> Prompt:
    name = "prompt" if row.get("prompt") is not None else "question"
    if row.get(name) is None:
        raise _Bad("missing field 'prompt' (or 'question')")
    turns = _turns(row, name, "user")
    _nonempty(turns[-1].content, name)
    return Prompt(turns, {k: v for k, v in row.items() if k != name})


# ---- the registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    """One data format: its parser, the fields that identify it (any one alternative, all of its
    fields present), and a one-line description for help and error messages."""

    parse: Callable[[dict[str, Any]], Example]
    required: tuple[tuple[str, ...], ...]
    description: str

    def matches(self, present: set[str]) -> bool:
        return any(all(name in present for name in alternative) for alternative in self.required)

    def fields_text(self) -> str:
        return " or ".join(" + ".join(alternative) for alternative in self.required)


FORMATS: dict[str, Format] = {  # in detection order: the more specific signatures first
    "preference": Format(_preference, (("chosen", "rejected"),),
                         "a preferred and a dispreferred answer; the prompt from 'prompt', 'conversations' "
                         "or whole HH transcripts"),
    "kto": Format(_kto, (("prompt", "completion", "label"),), "one answer judged desirable or not (KTO)"),
    "messages": Format(_openai_messages, (("messages",),), "OpenAI chat: a list of {role, content}"),
    "sharegpt": Format(_sharegpt, (("conversations",),),
                       "ShareGPT chat: a list of {from, value}; optional system and tools"),
    "alpaca": Format(_alpaca, (("instruction", "output"),), "Alpaca; optional input and system"),
    "prompt_completion": Format(_prompt_completion, (("prompt", "completion"),),
                                "a prompt and its answer, as text or messages"),
    "text": Format(_text_row, (("text",),), "raw text for continued pre-training"),
    "prompt": Format(_prompt, (("prompt",), ("question",)),
                     "prompts alone, for GRPO/PPO; the other fields reach the reward functions"),
}


def _format(name: str) -> Format:
    if name not in FORMATS:
        raise UserError(
            f"unknown data format '{name}'{suggestion(name, FORMATS)}; known: auto, {', '.join(FORMATS)}"
        )
    return FORMATS[name]


def _formats_help() -> str:
    return "\n".join(f"  {name}: {spec.fields_text()} -- {spec.description}" for name, spec in FORMATS.items())


def detect_format(rows: list[dict[str, Any]]) -> str:
    """The format of the rows, judged by the non-null field names of the first `DETECT_SAMPLE` rows.

    Each row is given the first format it matches; rows that match none are left to fail in
    `parse_row` with a precise message. The rows must agree: a mix is an error, not a majority vote.
    """
    sample = rows[:DETECT_SAMPLE]
    if not sample:
        raise UserError("no data rows to detect the format from")
    seen: set[str] = set()
    votes: Counter[str] = Counter()
    for row in sample:
        present = {key for key, value in row.items() if value is not None}
        seen |= present
        name = next((name for name, spec in FORMATS.items() if spec.matches(present)), None)
        if name:
            votes[name] += 1
    if len(votes) == 1:
        return next(iter(votes))
    if votes:
        mix = ", ".join(f"{name} ({count} rows)" for name, count in votes.most_common())
        raise UserError(
            f"the first {len(sample)} rows look like several formats: {mix}; set data.format to the one meant"
        )
    raise UserError(
        f"cannot tell the data format from the fields {sorted(seen)}; rename the fields or set data.format "
        f"to one of:\n{_formats_help()}"
    )


def parse_row(row: dict[str, Any], fmt: str, where: str) -> Example:
    """One row as an example of format `fmt`; any problem raises `DataError("<where>: <problem>")`."""
    spec = _format(fmt)
    try:
        return spec.parse(row)
    except _Bad as e:
        raise DataError(f"{where}: {e}") from None


@dataclass
class ParsedData:
    """The examples of a dataset, the format they were read as, and the rows skipped as bad."""

    examples: list[Example]
    format: str
    detected: bool
    bad_rows: list[str] = field(default_factory=list)


def parse_rows(rows: list[Row], fmt: str = "auto", on_bad_row: str = "error") -> ParsedData:
    """Every row as an example. `fmt="auto"` detects the format. Every row is checked: with bad rows, one
    `DataError` names the first and counts them all (and says how to skip them), or with `on_bad_row="skip"`
    they are left out, their messages kept in `bad_rows` and counted in a warning."""
    if on_bad_row not in ("error", "skip"):
        hint = suggestion(on_bad_row, ("error", "skip"))
        raise UserError(f"on_bad_row must be 'error' or 'skip', got '{on_bad_row}'{hint}")
    unread = [row.bad for row in rows if row.bad is not None]
    if rows and len(unread) == len(rows):
        raise DataError(f"all {len(rows)} rows are unreadable; first: {unread[0]}")
    detected = fmt == "auto"
    name = detect_format([row.data for row in rows if row.bad is None]) if detected else fmt
    spec = _format(name)
    examples: list[Example] = []
    bad: list[str] = []
    for row in rows:
        if row.bad is not None:  # a line the loader could not read (on_bad_row: skip kept it to count it)
            bad.append(row.bad)
            continue
        try:
            examples.append(parse_row(row.data, name, row.where))
        except DataError as e:
            bad.append(str(e))
    if bad and not examples:
        raise DataError(f"all {len(bad)} rows are bad for format '{name}' ({spec.fields_text()}); first: {bad[0]}")
    if bad and on_bad_row == "error":
        more = f"; {len(bad) - 1} more bad row(s) after it" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more} ({len(bad)} of {len(rows)} rows bad in total). Fix the row(s), or set "
                        "data.on_bad_row: skip to leave bad rows out (the report lists them)")
    if bad:
        logger.warning("skipped %d of %d rows as bad; first: %s", len(bad), len(rows), bad[0])
    return ParsedData(examples, name, detected, bad)
