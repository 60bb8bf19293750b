"""What `tunesmith eval TARGET` evaluates: a run folder, an adapter folder, a model folder or a hub id.

A run folder describes itself (run.json): its base model, its chat template, its recipe (which re-creates
the held-out split) and whether it saved an adapter (`adapter/`, loaded on top of the base and merged) or
full weights (`model/`). Its base model, scored by `--base` for the forgetting report, is loaded with the
same chat template, so before and after are measured on identical prompts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunesmith.bottleneck import CONFIG_FILE as BOTTLENECK_CONFIG
from tunesmith.data.templates import apply_template, end_of_turn
from tunesmith.errors import UserError
from tunesmith.models import load_model, load_tokenizer
from tunesmith.recipe import Recipe, recipe_from_dict

RUN_FILE = "run.json"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Target:
    """A resolved evaluation target; `model` is a folder or hub id, `adapter` a PEFT folder on top of it."""

    name: str
    model: str
    template: str = "auto"
    adapter: Path | None = None
    quantization: str | None = None
    run_dir: Path | None = None
    run: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def tokenizer_source(self) -> str:
        """The adapter folder holds the tokenizer saved with the run (and its chat template)."""
        return str(self.adapter) if self.adapter is not None else self.model

    @property
    def base_model(self) -> str | None:
        """The model this one was fine-tuned from, when known."""
        if self.run is not None:
            return self.run.get("base_model")
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
        return recipe_from_dict(self.run["recipe"], source=str(self.run_dir / RUN_FILE))

    def default_out(self) -> Path:
        """Where eval.json goes: the run folder, else runs/eval-<name>/ in the working directory.

        Never into a plain model folder: those are often shared, read-only or a hub cache, and a stray file
        there would travel with the model (to a server, to the hub).
        """
        if self.run_dir is not None:
            return self.run_dir
        return Path("runs") / f"eval-{Path(self.name.rstrip('/')).name}"


@dataclass
class LoadedTarget:
    """A model ready to evaluate: weights in eval mode, tokenizer with the chat template, end-of-turn text."""

    target: Target
    model: Any
    tokenizer: Any
    end_of_turn: str


def resolve_target(spec: str, template: str | None = None) -> Target:
    """Classify `spec` (run folder, adapter folder, model folder or hub id); `template` overrides the run's."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / RUN_FILE).is_file():
        return _from_run(path, template)
    if path.is_dir() and (path.parent / RUN_FILE).is_file() and _is_adapter(path):
        return _from_run(path.parent, template)
    if path.is_dir() and (path / ADAPTER_CONFIG).is_file():
        return _from_adapter(path, template)
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(
            f"'{spec}' is neither a run folder (run.json), an adapter folder (adapter_config.json) nor a model "
            "folder (config.json); point to one of those"
        )
    return Target(name=spec, model=str(path) if path.is_dir() else spec, template=template or "auto")


def _is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() or (folder / BOTTLENECK_CONFIG).is_file()


def _from_run(run_dir: Path, template: str | None) -> Target:
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{run_dir / RUN_FILE} is not valid JSON ({e}); the run folder is damaged") from None
    output = run_dir / run.get("output", "adapter")
    if not output.is_dir():
        raise UserError(
            f"run {run_dir} has no {output.name}/ folder yet (status: {run.get('status', 'unknown')}); "
            "evaluate it once training has finished, or evaluate a checkpoint's base model instead"
        )
    template = template or run.get("recipe", {}).get("data", {}).get("template", "auto")
    name = run.get("name", run_dir.name)
    if output.name == "model":
        return Target(name=name, model=str(output), template=template, run_dir=run_dir, run=run)
    quantization = "nf4" if run.get("adapter") == "qlora" else None  # evaluate on the base it was trained on
    return Target(name=name, model=run["base_model"], template=template, adapter=output, quantization=quantization,
                  run_dir=run_dir, run=run)


def _from_adapter(folder: Path, template: str | None) -> Target:
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{folder / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path)")
    return Target(name=str(folder), model=base, template=template or "auto", adapter=folder)


def load_target(target: Target, dtype: str = "auto") -> LoadedTarget:
    """Load weights and tokenizer, then the adapter on top (see `attach_adapter`); on a CUDA machine the model
    moves to the GPU (bitsandbytes has already placed a quantized one there)."""
    tokenizer = load_tokenizer(target.tokenizer_source)
    apply_template(tokenizer, target.template)
    model = load_model(target.model, dtype=dtype, tokenizer=tokenizer, quantization=target.quantization)
    if target.adapter is not None:
        model = attach_adapter(model, target.adapter, merge=target.quantization is None)
    if target.quantization is None and torch.cuda.is_available():
        model.to("cuda")
    model.eval()
    return LoadedTarget(target, model, tokenizer, end_of_turn(tokenizer, target.template))


def attach_adapter(model: Any, folder: Path, merge: bool) -> Any:
    """The base with the adapter saved in `folder` (adapters.load_adapter: every method, 4-bit bases
    included); LoRA/DoRA is merged into full weights when `merge` (same outputs, at plain-model speed),
    but never into a quantized base."""
    from peft import PeftModel, PeftType

    from tunesmith.adapters import load_adapter

    model = load_adapter(model, folder)
    if merge and isinstance(model, PeftModel) and model.peft_config["default"].peft_type == PeftType.LORA:
        model = model.merge_and_unload()
    return model

