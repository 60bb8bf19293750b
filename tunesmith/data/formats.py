"""Map one data row (a dict) to one internal example, whatever the file's format.

Recipes name a format (`data.format: alpaca`) or say `auto`; `FORMATS` is the one registry of those
names, and its order is the order in which `detect_format` tries them (the most specific fields first,
so an Alpaca dump that also carries a rendered `text` column is still Alpaca). Every problem in a row
raises `DataError("file:line: what is wrong")`, so the user can open the file at that line.

Message lists are read alike in every format (`data/fields.py`). A chat row may carry pictures in any of
the shapes LLaMA-Factory, OpenAI and TRL write; `data/image_rows.py` reads and checks them against the data
file's folder, so `messages` and `sharegpt` read image chats too and a text row parses as it always did.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.data.fields import BadRow, field_value, kind_name, nonempty, read_messages, text_field
from tunesmith.data.image_rows import attach_images, broken_pictures
from tunesmith.data.types import Conversation, Example, Message, Preference, Prompt, Text, Unpaired, example_images
from tunesmith.errors import DataError, UserError, suggestion

if TYPE_CHECKING:  # importing loading would import `datasets`, slow and not needed to parse
    from tunesmith.data.loading import Row

logger = logging.getLogger(__name__)

DETECT_SAMPLE = 50
"""How many leading rows `detect_format` looks at."""

def _turns(row: dict[str, Any], name: str, role: str) -> tuple[Message, ...]:
    """A field that is either plain text (one turn of `role`) or a message list."""
    value = field_value(row, name)
    return (Message(role, value),) if isinstance(value, str) else read_messages(value, name)


def _response(row: dict[str, Any], name: str) -> tuple[Message, ...]:
    """An answer field: text or messages ending in a non-empty assistant turn."""
    return _answer(_turns(row, name, "assistant"), name)


def _answer(turns: tuple[Message, ...], name: str) -> tuple[Message, ...]:
    if turns[-1].role != "assistant":
        raise BadRow(f"field '{name}' should end with an assistant turn, not {turns[-1].role}")
    if not turns[-1].content.strip():
        raise BadRow(f"field '{name}' has an empty response")
    return turns


def _trained(messages: tuple[Message, ...]) -> Conversation:
    """A conversation for SFT: it must contain something to learn, a non-empty assistant turn."""
    answers = [m for m in messages if m.role == "assistant"]
    if not answers:
        raise BadRow("the conversation has no assistant turn, so there is nothing to train on")
    if not answers[-1].content.strip():
        raise BadRow("the last assistant turn is empty")
    return Conversation(messages)


# ---- one parser per format ------------------------------------------------------------------------


def _alpaca(row: dict[str, Any]) -> Conversation:
    instruction = text_field(row, "instruction")
    extra = text_field(row, "input", required=False)
    output = nonempty(text_field(row, "output"), "output")
    system = text_field(row, "system", required=False)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    head = (Message("system", system),) if system.strip() else ()
    return Conversation(head + (Message("user", user), Message("assistant", output)))


def _sharegpt_turns(row: dict[str, Any]) -> tuple[Message, ...]:
    """`conversations`, with the top-level `system` and `tools` fields folded into one system turn
    (tools as `Available tools:\\n<tools>`), since our templates render a single system prompt."""
    turns = list(read_messages(field_value(row, "conversations"), "conversations"))
    inner = turns.pop(0).content if turns and turns[0].role == "system" else ""
    tools = row.get("tools")
    if tools is not None and not isinstance(tools, str):
        tools = json.dumps(tools, ensure_ascii=False)
    tools_block = f"Available tools:\n{tools.strip()}" if tools and tools.strip() not in ("", "[]", "{}") else ""
    system = "\n\n".join(p for p in (text_field(row, "system", required=False), inner, tools_block) if p.strip())
    return ((Message("system", system),) if system else ()) + tuple(turns)


def _sharegpt(row: dict[str, Any]) -> Conversation:
    return _trained(_sharegpt_turns(row))


def _openai_messages(row: dict[str, Any]) -> Conversation:
    return _trained(read_messages(field_value(row, "messages"), "messages"))


def _prompt_completion(row: dict[str, Any]) -> Conversation:
    return _trained(_turns(row, "prompt", "user") + _response(row, "completion"))


def _text_row(row: dict[str, Any]) -> Text:
    return Text(nonempty(text_field(row, "text"), "text"))


def _transcript(row: dict[str, Any], name: str) -> tuple[Message, ...]:
    """A full chat in one field: an Anthropic HH string `"\\n\\nHuman: …\\n\\nAssistant: …"` or messages."""
    value = field_value(row, name)
    if not isinstance(value, str):
        return read_messages(value, name)
    pieces = value.split("\n\nHuman:")
    if pieces[0].strip() or len(pieces) < 2:
        raise BadRow(
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
        raise BadRow("'chosen' and 'rejected' differ before their last assistant turn, so they share no prompt")
    if not chosen[:-1]:
        raise BadRow("'chosen' and 'rejected' hold only an answer; add the prompt turns or a 'prompt' field")
    return Preference(chosen[:-1], chosen[-1:], rejected[-1:])


def _kto(row: dict[str, Any]) -> Unpaired:
    label = field_value(row, "label")
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        label = label.strip().lower() == "true"  # CSV cells are text
    if not isinstance(label, bool):
        raise BadRow(f"field 'label' should be true or false, got {kind_name(label)} {label!r}")
    return Unpaired(_turns(row, "prompt", "user"), _response(row, "completion"), label)


def _prompt(row: dict[str, Any]) -> Prompt:
    name = "prompt" if row.get("prompt") is not None else "question"
    if row.get(name) is None:
        raise BadRow("missing field 'prompt' (or 'question')")
    turns = _turns(row, name, "user")
    nonempty(turns[-1].content, name)
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
                         "or whole HH transcripts; pictures as TRL's image parts + 'images'"),
    "kto": Format(_kto, (("prompt", "completion", "label"),), "one answer judged desirable or not (KTO)"),
    "messages": Format(_openai_messages, (("messages",),), "OpenAI chat: a list of {role, content}; "
                       "pictures as image_url parts, or TRL's image parts + 'images'"),
    "sharegpt": Format(_sharegpt, (("conversations",),),
                       "ShareGPT chat: a list of {from, value}; optional system and tools, "
                       "LLaMA-Factory's <image> + 'images'"),
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


def parse_row(row: dict[str, Any], fmt: str, where: str, folder: Path | None = None, decode: bool = True) -> Example:
    """One row as an example of format `fmt`, its pictures' relative paths resolved against `folder` (the data
    file's) and, with `decode`, each picture decoded; any problem raises `DataError("<where>: <problem>")`."""
    spec = _format(fmt)
    try:
        return attach_images(spec.parse(row), row, folder, decode)
    except BadRow as e:
        raise DataError(f"{where}: {e}") from None


def _parse_all(rows: list[Row], name: str, workers: int) -> tuple[list[Example], list[str], list[str]]:
    """The rows' examples, the messages of the bad rows in row order (a picture that does not decode too), and
    the picture files the rows name, good or bad (the data store watches them)."""
    parsed: list[tuple[int, Example]] = []
    bad: list[tuple[int, str]] = []
    for i, row in enumerate(rows):
        if row.bad is not None:  # a line the loader could not read (on_bad_row: skip kept it to count it)
            bad.append((i, row.bad))
            continue
        try:
            parsed.append((i, parse_row(row.data, name, row.where, row.folder, decode=False)))
        except DataError as e:
            bad.append((i, str(e)))
    broken = broken_pictures([example for _, example in parsed], workers)
    bad += [(parsed[k][0], f"{rows[parsed[k][0]].where}: {problem}") for k, problem in broken.items()]
    examples = [example for k, (_, example) in enumerate(parsed) if k not in broken]
    pictures = sorted({ref for _, ex in parsed for ref in example_images(ex)
                       if ref[:5].lower() != "data:"})  # a data: URI is part of the data file's bytes
    return examples, [message for _, message in sorted(bad)], pictures


@dataclass
class ParsedData:
    """The examples of a dataset, the format they were read as, and the rows skipped as bad."""

    examples: list[Example]
    format: str
    detected: bool
    bad_rows: list[str] = field(default_factory=list)
    pictures: list[str] = field(default_factory=list)
    """Every picture file the rows name, those of rows skipped as bad included."""


def parse_rows(rows: list[Row], fmt: str = "auto", on_bad_row: str = "error", workers: int = 1) -> ParsedData:
    """Every row as an example. `fmt="auto"` detects the format. Every row is checked: with bad rows, one
    `DataError` names the first and counts them all (and says how to skip them), or with `on_bad_row="skip"`
    they are left out, their messages kept in `bad_rows` and counted in a warning. The pictures of all rows
    are decoded over `workers` processes (`image_rows.broken_pictures`), each file once."""
    if on_bad_row not in ("error", "skip"):
        hint = suggestion(on_bad_row, ("error", "skip"))
        raise UserError(f"on_bad_row must be 'error' or 'skip', got '{on_bad_row}'{hint}")
    unread = [row.bad for row in rows if row.bad is not None]
    if rows and len(unread) == len(rows):
        raise DataError(f"all {len(rows)} rows are unreadable; first: {unread[0]}")
    detected = fmt == "auto"
    name = detect_format([row.data for row in rows if row.bad is None]) if detected else fmt
    _format(name)
    examples, bad, pictures = _parse_all(rows, name, workers)
    judge_bad_rows(bad, len(examples), len(rows), name, on_bad_row)
    return ParsedData(examples, name, detected, bad, pictures)


def judge_bad_rows(bad: list[str], good: int, total: int, name: str, on_bad_row: str) -> None:
    """After every row was read: one `DataError` naming the first bad row (all bad, or any bad under
    `on_bad_row="error"`), else a warning counting the skipped ones."""
    if bad and not good:
        raise DataError(f"all {len(bad)} rows are bad for format '{name}' ({_format(name).fields_text()}); first: {bad[0]}")
    if bad and on_bad_row == "error":
        more = f"; {len(bad) - 1} more bad row(s) after it" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more} ({len(bad)} of {total} rows bad in total). Fix the row(s), or set "
                        "data.on_bad_row: skip to leave bad rows out (the report lists them)")
    if bad:
        logger.warning("skipped %d of %d rows as bad; first: %s", len(bad), total, bad[0])
