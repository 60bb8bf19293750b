"""What every recipe block shares: unknown keys are errors, and unknown values name the closest choice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from tunesmith.errors import suggestion


class Strict(BaseModel):
    """Every recipe block forbids unknown keys, so typos cannot pass as defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        """YAML's true/false would pass as 1/0 for a number (`batch_size: true` trained with batch 1)."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                kinds = str(field.annotation)
                if isinstance(data.get(name), bool) and ("int" in kinds or "float" in kinds) and "bool" not in kinds:
                    raise ValueError(f"{name}: expected a number, got {str(data[name]).lower()}")
        return data


def unknown_value(key: str, value: str, choices: Iterable[str]) -> str:
    """The message for a value outside `choices`, with a did-you-mean."""
    choices = tuple(choices)
    return f"{key}: unknown value '{value}'{suggestion(value, choices)}; choose one of: {', '.join(choices)}"
