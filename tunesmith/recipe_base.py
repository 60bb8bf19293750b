"""The base of every recipe block: what no block may accept, whatever its keys.

- unknown keys (a typo must not pass as a default);
- inf and nan (`lr: .inf` passed validation and wrote Infinity into metrics.jsonl);
- YAML's true/false for a number (`batch_size: true` trained with batch 1).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    """Every recipe block forbids unknown keys, so typos cannot pass as defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                kinds = str(field.annotation)
                if isinstance(data.get(name), bool) and ("int" in kinds or "float" in kinds) and "bool" not in kinds:
                    raise ValueError(f"{name}: expected a number, got {str(data[name]).lower()}")
        return data
