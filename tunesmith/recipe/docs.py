"""Generate docs/recipe.md from the Recipe schema, so the documentation cannot drift from the code.

    python -m tunesmith docs > docs/recipe.md      (a test fails when the file is stale)
"""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tunesmith.recipe.errors import _model_in
from tunesmith.recipe.spec import Recipe


def render_recipe_docs() -> str:
    lines = [
        "# Recipe reference",
        "",
        "Generated from the schema in `tunesmith/recipe/spec.py` (and each method's block, `tunesmith/methods/`) by `tunesmith docs`; do not edit by hand.",
        "Every block rejects unknown keys (with a did-you-mean); override any key on the command line as",
        "`key.sub=value`, e.g. `tunesmith train r.yaml train.lr=2e-5`.",
        "",
    ]
    schema_tables(Recipe, "", lines)
    return "\n".join(lines) + "\n"


def schema_tables(model: type[BaseModel], prefix: str, lines: list[str]) -> None:
    """Append one markdown table per block of a pydantic schema (key, type, default, meaning), nested blocks
    after their parent: the recipe and the comparison spec are documented by the same rules."""
    title = prefix.rstrip(".") or "top level"
    lines += [f"## `{title}`", ""]
    if model.__doc__ and not model.__doc__.startswith(model.__name__ + "("):
        lines += [model.__doc__.strip().split("\n")[0], ""]
    lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    nested = []
    for name, field in model.model_fields.items():
        sub = _model_in(field.annotation)
        if sub is not None:
            nested.append((sub, f"{prefix}{name}."))
        default = _default(field)
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{prefix}{name}` | {_type(field.annotation)} | {default} | {meaning} |")
    lines.append("")
    for sub, sub_prefix in nested:
        schema_tables(sub, sub_prefix, lines)


def _default(field: FieldInfo) -> str:
    """The default as a user would write it: a default_factory is called (an empty list shows as `[]`, not as
    pydantic's internal `PydanticUndefined`); no default at all is `required`."""
    if field.default_factory is not None:
        return _show(field.get_default(call_default_factory=True, validated_data={}))
    return "required" if field.default is PydanticUndefined else _show(field.default)


def _show(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(block)"
    return f"`{value!r}`" if value is not None else "`null`"


def _type(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", str(annotation)).replace("|", "\\|")  # last part of dotted names
