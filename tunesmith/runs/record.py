"""run.json, the run folder's description of itself, as one typed record.

`tunesmith train` writes it at the start (status "running"), on interruption and at the end; every other
verb reads it through `read_run`, never by parsing the JSON itself, so there is one shape and one set of
error messages. The resolved recipe inside is kept as plain JSON (it re-validates with `to_recipe`), and
the fields verbs need most are typed properties.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import UserError

if TYPE_CHECKING:
    from tunesmith.recipe import Recipe

RUN_FILE = "run.json"
EVAL_FILE = "eval.json"
STATUSES = ("running", "done", "interrupted", "diverged", "failed", "killed")


@dataclass(frozen=True)
class RunRecord:
    """The contents of a run folder's run.json, plus the folder it was read from."""

    path: Path
    name: str
    status: str
    recipe: dict[str, Any]
    base_model: str
    method: str
    adapter: str
    output: str = "adapter"
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    started: str | None = None
    ended: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    reason: str | None = None
    """Why the run stopped, when it did not finish (status failed, killed, diverged, interrupted)."""

    @property
    def weights_dir(self) -> Path:
        """`adapter/` (PEFT or bottleneck files) or `model/` (full fine-tuning)."""
        return self.path / self.output

    @property
    def has_adapter(self) -> bool:
        return self.adapter != "full"

    @property
    def template(self) -> str:
        """The chat template the run trained with (data.template)."""
        return self.recipe.get("data", {}).get("template", "auto")

    @property
    def model_options(self) -> dict[str, Any]:
        return self.recipe.get("model_options", {})

    @property
    def adapter_args(self) -> dict[str, Any]:
        return self.recipe.get("adapter_args", {})

    @property
    def quantization(self) -> str | None:
        """How the base was loaded for training: a QLoRA adapter was trained on the NF4 base."""
        return "nf4" if self.adapter == "qlora" else None

    @property
    def eval_file(self) -> Path:
        return self.path / EVAL_FILE

    def to_recipe(self) -> Recipe:
        """The run's recipe, re-validated (it re-creates the data split and settings)."""
        from tunesmith.recipe import recipe_from_dict

        return recipe_from_dict(self.recipe, source=str(self.path / RUN_FILE))

    def eval_results(self) -> dict[str, Any] | None:
        """eval.json written by `tunesmith eval` into this folder, or None before any eval."""
        return read_json(self.eval_file)

    def require_finished(self) -> RunRecord:
        """Self, when training finished and saved its final weights; else a UserError saying how to go on."""
        if self.status != "done":
            why = f" ({self.reason})" if self.reason else ""
            raise UserError(f"run {self.path} has status '{self.status}'{why}, so it has no final weights; "
                            "finish it first (tunesmith train RECIPE --resume)")
        if not self.weights_dir.is_dir():
            raise UserError(f"run {self.path} has no {self.output}/ folder; was it moved or deleted?")
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "recipe": self.recipe, "base_model": self.base_model,
            "method": self.method, "adapter": self.adapter, "output": self.output, "data": self.data,
            "versions": self.versions, "started": self.started, "ended": self.ended, "state": self.state,
            "final": self.final, "reason": self.reason,
        }


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a run.json (a run tunesmith wrote)."""
    return (Path(path) / RUN_FILE).is_file()


def read_run(path: str | Path) -> RunRecord:
    """The run folder's record; a UserError when it is not a run folder or its run.json is damaged."""
    path = Path(path).expanduser()
    raw = read_json(path / RUN_FILE)
    if raw is None:
        raise UserError(f"{path} is not a run folder (no {RUN_FILE}); give the folder `tunesmith train` wrote, "
                        "e.g. runs/<name>")
    try:
        return RunRecord(
            path=path, name=raw.get("name", path.name), status=raw.get("status", "unknown"), recipe=raw["recipe"],
            base_model=raw["base_model"], method=raw["method"], adapter=raw["adapter"],
            output=raw.get("output", "adapter"), data=raw.get("data") or {}, versions=raw.get("versions") or {},
            started=raw.get("started"), ended=raw.get("ended"), state=raw.get("state") or {}, final=raw.get("final"),
            reason=raw.get("reason"),
        )
    except (KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path / RUN_FILE} lacks {err}; the run folder is damaged or was written by "
                        "another tool") from None


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, None when the file is absent; a UserError when it is not valid JSON."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); the folder is damaged") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} holds a JSON {type(value).__name__}, not an object; the folder is damaged")
    return value
