"""run.json checked as untrusted input: one schema, every bad field a `RunFileError` naming it.

A run folder is often handed over (a colleague's results, a download, a shared disk), and the verbs act on
what its run.json says: which folder holds the weights, which base model to load. So nothing in it is
trusted before this check:
- every field has its type (`"recipe": "x"` or `"state": [1, 2]` is refused, naming the field);
- `output`, the weights folder, is one plain name inside the run folder (`"../../runs/other/adapter"`,
  `"/etc/ssl"` or a symlink out of the folder are refused): a run never points at another run's weights;
- `base_model` must name a model folder (config.json), a GGUF file or a hub id (`/etc` is refused) before
  merge, export, eval or serve load it (`check_model_reference`);
- `started`/`ended` are ISO times, `status` one of the statuses tunesmith writes.
Unknown top-level fields are kept as they are (newer versions add fields, e.g. measured step times).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tunesmith.errors import UserError
from tunesmith.recipe.registry import ADAPTERS

STATUSES = ("running", "done", "interrupted", "diverged", "failed", "killed")
WEIGHTS_FOLDERS = ("adapter", "model")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RECIPE_BLOCKS = ("data", "train", "model_options", "adapter_args", "eval")


class RunFileError(UserError):
    """A run.json field that is missing, of the wrong type or pointing outside its run folder.

    `file` is the run.json, `field` the dotted name of the bad field ("" when the whole file is bad); the
    message says both and how to go on, so a command prints it alone and a listing shows it per row."""

    def __init__(self, file: Path, field: str, problem: str) -> None:
        self.file = Path(file)
        self.field = field
        where = f"field '{field}'" if field else "the file"
        super().__init__(f"{file}: {where} {problem}; the run folder is damaged or was not written by tunesmith "
                         "(fix that field, or train the run again)")


class RunFile(BaseModel):
    """The fields of run.json and their types; `extra="allow"` keeps fields added by newer versions."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str = Field(min_length=1, max_length=200)
    status: Literal[STATUSES]  # type: ignore[valid-type]
    recipe: dict[str, Any]
    base_model: str = Field(min_length=1, max_length=4096)
    method: str = Field(pattern=_NAME.pattern, max_length=64)
    adapter: Literal[ADAPTERS]  # type: ignore[valid-type]
    output: str = "adapter"
    data: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    started: str | None = None
    ended: str | None = None
    state: dict[str, Any] = Field(default_factory=dict)
    final: dict[str, Any] | None = None
    reason: str | None = None

    @field_validator("output")
    @classmethod
    def _one_name_inside(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if value not in WEIGHTS_FOLDERS or len(parts) != 1:
            raise ValueError(f"must be {' or '.join(repr(w) for w in WEIGHTS_FOLDERS)}, a folder inside the run "
                             f"folder, not {value!r}")
        return value

    @field_validator("base_model")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 for c in value):
            raise ValueError("holds control characters (a NUL or a newline); it must name a model")
        return value

    @field_validator("started", "ended")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"must be an ISO date and time like 2026-01-31T12:00:00+00:00, not {value!r}") from None
        return value

    @field_validator("state")
    @classmethod
    def _counters_are_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("step", "tokens"):
            if key in value and (not isinstance(value[key], int) or isinstance(value[key], bool) or value[key] < 0):
                raise ValueError(f"state.{key} must be a whole number >= 0, not {value[key]!r}")
        return value

    @field_validator("recipe")
    @classmethod
    def _blocks_are_objects(cls, value: dict[str, Any]) -> dict[str, Any]:
        for block in _RECIPE_BLOCKS:
            if block in value and not isinstance(value[block], dict):
                raise ValueError(f"block '{block}' must be an object, not {type(value[block]).__name__}")
        template = value.get("data", {}).get("template", "auto")
        if not isinstance(template, str):
            raise ValueError(f"data.template must be a text, not {type(template).__name__}")
        return value


def parse_run_file(raw: dict[str, Any], folder: Path, file: Path) -> RunFile:
    """`raw` (run.json's object) checked; a RunFileError naming the first bad field."""
    try:
        parsed = RunFile.model_validate({"name": folder.name, **raw})
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        problem = "is missing" if first["type"] == "missing" else f"is invalid: {first['msg']}"
        raise RunFileError(file, field, problem) from None
    check_inside(folder, parsed.output, file, "output")
    return parsed


def check_inside(folder: Path, name: str, file: Path, field: str) -> Path:
    """`folder/name`, refused when it resolves (through symlinks) outside `folder`."""
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise RunFileError(file, field, f"points outside the run folder ({path} -> {path.resolve()})")
    return path


def check_model_reference(value: str, file: Path, field: str = "base_model") -> str:
    """`value` when it names a model folder (config.json or a GGUF inside), a GGUF file or a hub id (org/name);
    else a RunFileError: a run folder must not make a verb load any folder it names."""
    path = Path(value).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return value
    if path.is_dir() and ((path / "config.json").is_file() or any(path.glob("*.gguf"))):
        return value
    if path.exists():
        raise RunFileError(file, field, f"names {value}, which is neither a model folder (config.json), a GGUF "
                           "file nor a hub id")
    if _HUB_ID.match(value) and ".." not in value:
        return value
    raise RunFileError(file, field, f"names {value}, which does not exist here and is not a hub id (org/name); if "
                       "the base model moved, set base_model in that run.json to where it is now")
