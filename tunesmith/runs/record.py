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

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.adapters.unit import Adapter
from tunesmith.errors import UserError
from tunesmith.runs.lock import holder_alive
from tunesmith.runs.run_file import STATUSES, RunFileError, check_inside, check_model_reference, parse_run_file

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe

RUN_FILE = "run.json"
EVAL_FILE = "eval.json"
__all__ = ["EVAL_FILE", "RUN_FILE", "STATUSES", "RunFileError", "RunRecord", "is_run_folder", "read_json", "read_run"]


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
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields of run.json this version does not know (written by a newer one), kept as they are."""

    @property
    def weights_dir(self) -> Path:
        """`adapter/` (PEFT or bottleneck files) or `model/` (full fine-tuning)."""
        return self.path / self.output

    @property
    def adapter_kind(self) -> Adapter:
        """The record of the run's adapter (adapters/kinds/): run.json's adapter is checked against the kinds."""
        return ADAPTER_KINDS[self.adapter]

    @property
    def has_adapter(self) -> bool:
        return not self.adapter_kind.trains_base

    @property
    def template(self) -> str:
        """The chat template the run trained with (data.template)."""
        return self.recipe.get("data", {}).get("template", "auto")

    @property
    def model_options(self) -> dict[str, Any]:
        """The run's model options, without `trust_remote_code`: a run folder never switches on running the code
        of a model folder; that takes the user's own opt-in on the command line."""
        return {k: v for k, v in self.recipe.get("model_options", {}).items() if k != "trust_remote_code"}

    @property
    def adapter_args(self) -> dict[str, Any]:
        return self.recipe.get("adapter_args", {})

    @property
    def quantization(self) -> str | None:
        """How the base was loaded for training: a QLoRA adapter was trained on the NF4 base."""
        return self.adapter_kind.base_quantization

    @property
    def eval_file(self) -> Path:
        return self.path / EVAL_FILE

    def to_recipe(self) -> Recipe:
        """The run's recipe, re-validated (it re-creates the data split and settings)."""
        from tunesmith.recipe.spec import recipe_from_dict
        from tunesmith.recipe.user_code import RECORDED

        return recipe_from_dict(self.recipe, source=str(self.path / RUN_FILE), user_code=RECORDED)

    def eval_results(self) -> dict[str, Any] | None:
        """eval.json written by `tunesmith eval` into this folder, or None before any eval."""
        from tunesmith.runs.eval_file import read_eval  # eval_file reads through this module: imported late

        return read_eval(self.path)

    def require_finished(self) -> RunRecord:
        """Self, when training finished and saved its final weights; else a UserError saying how to go on."""
        if self.status != "done":
            why = f" ({self.reason})" if self.reason else ""
            raise UserError(f"run {self.path} has status '{self.status}'{why}, so it has no final weights; "
                            "finish it first (tunesmith train RECIPE --resume)")
        if not self.weights_dir.is_dir():
            raise UserError(f"run {self.path} has no {self.output}/ folder; was it moved or deleted?")
        check_inside(self.path, self.output, self.path / RUN_FILE, "output")
        if self.has_adapter:  # the adapter is loaded on top of it (merge, export); full weights stand alone
            self.checked_base_model()
        return self

    def checked_base_model(self) -> str:
        """`base_model`, once checked to name a model folder, a GGUF file or a hub id (a RunFileError if not)."""
        return check_model_reference(self.base_model, self.path / RUN_FILE)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "recipe": self.recipe, "base_model": self.base_model,
            "method": self.method, "adapter": self.adapter, "output": self.output, "data": self.data,
            "versions": self.versions, "started": self.started, "ended": self.ended, "state": self.state,
            "final": self.final, "reason": self.reason, **self.extra,
        }


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a folder holding a run.json (a run tunesmith wrote)."""
    return (Path(path) / RUN_FILE).is_file()


def read_run(path: str | Path) -> RunRecord:
    """The run folder's record, checked as untrusted input (run_file.py); a UserError when it is not a run
    folder, a RunFileError naming the field when its run.json is damaged. A run whose run.json says `running`
    while no live process holds its lock (kill -9, out of memory, a machine that stopped) reads as `killed`."""
    path = Path(path).expanduser()
    file = path / RUN_FILE
    raw = read_json(file)
    if raw is None:
        raise UserError(f"{path} is not a run folder (no {RUN_FILE}); give the folder `tunesmith train` wrote, "
                        "e.g. runs/<name>")
    run = parse_run_file(raw, path, file)
    known = set(type(run).model_fields)
    status, reason = run.status, run.reason
    if status == "running" and holder_alive(path.resolve()) is False:
        status, reason = "killed", DEAD_HOLDER
    return RunRecord(
        path=path, name=run.name, status=status, recipe=run.recipe, base_model=run.base_model, method=run.method,
        adapter=run.adapter, output=run.output, data=run.data, versions=run.versions, started=run.started,
        ended=run.ended, state=run.state, final=run.final, reason=reason,
        extra={k: v for k, v in raw.items() if k not in known},
    )


DEAD_HOLDER = ("the training process ended without recording why: killed (kill -9, out of memory) or the machine "
               "stopped; continue it with tunesmith train RECIPE --resume")


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
