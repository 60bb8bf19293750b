"""What a verb's TARGET argument names: a run folder, an adapter folder, a model folder, a hub id or a
GGUF file, resolved into one typed `Target` (base model, adapter kind and folder, template, quantization).

A run folder describes itself (run.json): its base model, its chat template, its recipe and whether it
saved an adapter (`adapter/`, loaded on top of the base) or full weights (`model/`). Its base model, used
by `eval --base`, `serve` and `compare`, is loaded with the same chat template, so before and after are
measured on identical prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.adapters.folder import PEFT_CONFIG as ADAPTER_CONFIG
from tunesmith.adapters.folder import read_kind
from tunesmith.adapters.kinds.bottleneck import CONFIG_FILE as BOTTLENECK_CONFIG
from tunesmith.errors import UserError
from tunesmith.runs.record import RunRecord, is_run_folder, read_json, read_run

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe


@dataclass(frozen=True)
class Target:
    """A resolved target; `model` is a folder, hub id or GGUF file, `adapter` a folder loaded on top of it."""

    name: str
    model: str
    template: str = "auto"
    adapter: Path | None = None
    adapter_kind: str | None = None
    quantization: str | None = None
    run: RunRecord | None = None

    @property
    def run_dir(self) -> Path | None:
        return self.run.path if self.run is not None else None

    @property
    def tokenizer_source(self) -> str:
        """The adapter folder holds the tokenizer saved with the run (and its chat template)."""
        return str(self.adapter) if self.adapter is not None else self.model

    @property
    def base_model(self) -> str | None:
        """The model this one was fine-tuned from, when known."""
        if self.run is not None:
            return self.run.base_model
        if self.adapter is not None:
            return self.model
        return None

    def base(self) -> Target:
        """The base model, under this target's chat template; a UserError when there is none to compare with."""
        base = self.base_model
        if base is None:
            raise UserError(
                f"--base (and --max-drop) compare a fine-tuned run with its base model, but '{self.name}' is a "
                "plain model; give a run folder (it records its base model in run.json)"
            )
        return Target(name=f"{self.name} (base)", model=base, template=self.template, quantization=self.quantization)

    def recipe(self) -> Recipe:
        """The run's recipe, re-validated from run.json."""
        if self.run is None:
            raise UserError(f"'{self.name}' is not a run folder, so it has no recipe; pass --heldout FILE")
        return self.run.to_recipe()

    def default_out(self) -> Path:
        """Where a verb's results go: the run folder, else runs/eval-<name>/ in the working directory.

        Never into a plain model folder: those are often shared, read-only or a hub cache, and a stray file
        there would travel with the model (to a server, to the hub).
        """
        if self.run is not None:
            return self.run.path
        return Path("runs") / f"eval-{Path(self.name.rstrip('/')).name}"


def resolve_target(spec: str, template: str | None = None) -> Target:
    """Classify `spec` (run folder, adapter folder, model folder, GGUF file or hub id); `template`
    overrides the run's chat template."""
    if "\x00" in spec:
        raise UserError(f"{spec!r} holds a NUL character; name a run folder, adapter folder, model folder or GGUF file")
    path = Path(spec).expanduser()
    if path.is_dir() and is_run_folder(path):
        return _from_run(read_run(path), template)
    if path.is_dir() and is_run_folder(path.parent) and is_adapter_folder(path):
        return _from_run(read_run(path.parent), template)
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        return _from_adapter(path, template)
    if path.is_file() and path.suffix == ".gguf":
        return Target(name=spec, model=str(path), template=template or "auto")
    if path.is_dir() and not (path / "config.json").is_file() and not any(path.glob("*.gguf")):
        raise UserError(
            f"'{spec}' is neither a run folder (run.json), an adapter folder (adapter_config.json), a model "
            "folder (config.json) nor a GGUF file; point to one of those"
        )
    return Target(name=spec, model=str(path) if path.exists() else spec, template=template or "auto")


def is_adapter_folder(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() or (folder / BOTTLENECK_CONFIG).is_file()


def _from_run(run: RunRecord, template: str | None) -> Target:
    if not run.weights_dir.is_dir():
        raise UserError(
            f"run {run.path} has no {run.output}/ folder yet (status: {run.status}); use it once training has "
            "finished (tunesmith train RECIPE --resume finishes an interrupted run)"
        )
    template = template or run.template
    if not run.has_adapter:
        return Target(name=run.name, model=str(run.weights_dir), template=template, run=run)
    return Target(name=run.name, model=run.checked_base_model(), template=template, adapter=run.weights_dir,
                  adapter_kind=run.adapter, quantization=run.quantization, run=run)


def _from_adapter(folder: Path, template: str | None) -> Target:
    config = read_json(folder / ADAPTER_CONFIG) or {}  # a UserError when it is not a JSON object
    base = config.get("base_model_name_or_path")
    if not base or not isinstance(base, str):
        raise UserError(f"{folder / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path)")
    return Target(name=str(folder), model=base, template=template or "auto", adapter=folder,
                  adapter_kind=read_kind(folder).name)
