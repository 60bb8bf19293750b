"""What every recipe block shares: unknown keys are errors, and unknown values name the closest choice."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from tunesmith.errors import suggestion


class Strict(BaseModel):
    """Every recipe block forbids unknown keys, so typos cannot pass as defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def unknown_value(key: str, value: str, choices: Iterable[str]) -> str:
    """The message for a value outside `choices`, with a did-you-mean."""
    choices = tuple(choices)
    return f"{key}: unknown value '{value}'{suggestion(value, choices)}; choose one of: {', '.join(choices)}"
