"""A typer command whose parameters are a dataclass's fields, so the options are declared once, in the library.

Each field's metadata (evaluate/options.py `option`, `argument`) gives its flags, help text and lower bound;
the command hands the body one instance of the dataclass, each value converted by the field's `parse`.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from typing import Any, Optional

import typer


def dataclass_command(options_class: type, body: Callable[[Any], None], doc: str) -> Callable[..., None]:
    """A function typer reads as a command taking `options_class`'s fields, calling `body(options_class(...))`."""
    hints = typing.get_type_hints(options_class)
    own = fields(options_class)
    parameters = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_typer_default(f),
                                    annotation=_command_line_type(f, hints[f.name])) for f in own]

    def command(**values: Any) -> None:
        body(options_class(**{f.name: _parse(f, values[f.name]) for f in own}))

    command.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    command.__doc__ = doc
    return command


def _typer_default(option: Field) -> Any:
    meta = option.metadata
    if meta.get("argument"):
        return typer.Argument(..., help=meta["help"])
    default = ... if option.default is MISSING else option.default
    return typer.Option(default, *meta["flags"], help=meta["help"], min=meta["min"])


def _command_line_type(option: Field, hint: Any) -> Any:
    """The type typer parses: `typed_as` when the field holds something else, written `Optional[...]` as typer
    expects when None is the default."""
    typed_as = option.metadata.get("typed_as")
    if typed_as is not None:
        return Optional[typed_as] if option.default is None else typed_as
    if isinstance(hint, types.UnionType):
        return typing.Union[hint.__args__]
    return hint


def _parse(option: Field, value: Any) -> Any:
    parse = option.metadata.get("parse")
    return parse(value) if parse is not None else value
