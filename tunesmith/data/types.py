"""The internal forms every data format is mapped to.

Whatever the file looked like (Alpaca, ShareGPT, OpenAI messages, HH transcripts...), after
`formats.parse_row` the rest of the pipeline sees only these few frozen types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

IGNORE_INDEX = -100
"""Label value for tokens that carry no loss (prompt, padding, template glue)."""


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Conversation:
    """A chat; the loss falls on assistant turns.

    `images` are the chat's pictures, each a local file path or a `data:` URI, in the order their
    `<image>` placeholders (`data.images.IMAGE_PLACEHOLDER`) appear in the messages' text: one form for
    every multimodal data format, so templates and processors meet a single shape.
    """

    messages: tuple[Message, ...]
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Text:
    """Raw text for continued pre-training; every token is trained."""

    text: str


@dataclass(frozen=True)
class Preference:
    """A pairwise preference: the same prompt, a preferred and a dispreferred answer.

    `images` are the prompt's pictures, in the order of its `<image>` placeholders (as for `Conversation`):
    both answers are judged against the same pictures, so the answers themselves hold none."""

    prompt: tuple[Message, ...]
    chosen: tuple[Message, ...]
    rejected: tuple[Message, ...]
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prompt:
    """A prompt with no answer (GRPO/PPO rollouts); `fields` keeps the row's other columns for rewards."""

    prompt: tuple[Message, ...]
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Unpaired:
    """One judged answer (KTO): a prompt, a completion, and whether the completion is desirable."""

    prompt: tuple[Message, ...]
    completion: tuple[Message, ...]
    desirable: bool


Example = Union[Conversation, Text, Preference, Prompt, Unpaired]


def example_images(example: Example) -> tuple[str, ...]:
    """The pictures an example shows the model: a chat's, a preference pair's; none for the other kinds, which
    the data layer refuses pictures for."""
    return example.images if isinstance(example, (Conversation, Preference)) else ()


@dataclass
class Sample:
    """One tokenized training sequence. `labels[i]` is the target for position i (not shifted)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False  # True when the end was cut off to fit the maximum length

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class PackedRow:
    """Several samples laid end to end in one row; `position_ids` restart at 0 for each sample."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    lengths: list[int]
