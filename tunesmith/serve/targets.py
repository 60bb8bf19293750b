"""What `tunesmith serve TARGET...` serves: the one module of serve/ that knows how targets are resolved and
loaded (through runs/targets.py and adapters/build.py).

A TARGET is a run folder, an adapter folder (PEFT or bottleneck), a model folder (a merged run included) or a
`.gguf` file; `NAME=TARGET` serves it under NAME. An adapter target also serves its base, under the base
folder's name: adapters over one base share that base in memory. Weights are read from safetensors only: a
folder that holds pickled weights alone (`*.bin`, `*.pt`) is refused, since unpickling runs code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.adapters.build import load_adapter
from tunesmith.adapters.folder import read_adapter_config, read_kind
from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.adapters.unit import Adapter, Serving
from tunesmith.data.templates import apply_template, end_of_turn
from tunesmith.errors import UserError
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.runs.targets import resolve_target
from tunesmith.vision.processor import processor_if_vision

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Served model names: no slashes, no dot-dot, nothing a path or a URL could be tricked with."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclass(frozen=True)
class ServeSpec:
    """One served model id: a base or merged model (`kind` "model") or an adapter of `kind` over `base`."""

    name: str
    base: str
    kind: str
    template: str = "auto"
    adapter: Path | None = None
    quantization: str | None = None

    @property
    def adapter_kind(self) -> Adapter | None:
        """The adapter's record (adapters/kinds/); None for a base or merged model."""
        return None if self.kind == "model" else ADAPTER_KINDS[self.kind]

    @property
    def serving(self) -> Serving:
        """How the engine runs this id (a base or merged model: as a model)."""
        return Serving.MODEL if self.adapter_kind is None else self.adapter_kind.serving

    @property
    def tokenizer_source(self) -> str:
        """The adapter folder keeps the tokenizer (and chat template) the run trained with."""
        return str(self.adapter) if self.adapter is not None else self.base


def check_name(name: str) -> str:
    """`name` when it is a safe model id, else a UserError saying what is allowed."""
    if not NAME_PATTERN.match(name):
        raise UserError(f"model name '{name}' is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


def base_name(source: str) -> str:
    """The served id of a base model: its folder's (or GGUF file's) name, a hub id's last part."""
    name = Path(source.rstrip("/")).name
    return re.sub(r"[^A-Za-z0-9._-]", "-", name.removesuffix(".gguf")) or "base"


def resolve(spec: str) -> list[ServeSpec]:
    """The served ids of one TARGET (`[NAME=]PATH`): an adapter's base comes first, then the adapter."""
    name, _, path = spec.partition("=") if "=" in spec and not Path(spec).exists() else ("", "", spec)
    if path.endswith(".gguf"):
        if not Path(path).is_file():
            raise UserError(f"GGUF file '{path}' does not exist")
        return [ServeSpec(check_name(name or base_name(path)), path, "model")]
    target = resolve_target(path)
    if target.adapter is None:
        _require_safetensors(Path(target.model), "model")
        return [ServeSpec(check_name(name or base_name(target.name)), target.model, "model", target.template)]
    base = ServeSpec(base_name(target.model), target.model, "model", "auto", quantization=target.quantization)
    adapter = adapter_spec(name or base_name(target.name), target.adapter, target.model, target.template)
    return [base, ServeSpec(adapter.name, adapter.base, adapter.kind, adapter.template, adapter.adapter,
                            target.quantization)]


def adapter_spec(name: str, folder: Path, base: str | None = None, template: str | None = None) -> ServeSpec:
    """An adapter folder as a served id; its base from the folder (or `base`), its template from its run."""
    folder = Path(folder)
    kind = read_kind(folder).name
    _require_safetensors(folder, "adapter")
    if base is None or template is None:
        target = resolve_target(str(folder))
        base, template = base or target.model, template or target.template
    return ServeSpec(check_name(name), base, kind, template, folder)


def has_tokenizer(folder: Path) -> bool:
    """Whether `folder` holds tokenizer files (a run saves its tokenizer, with its chat template, beside the
    adapter)."""
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def _require_safetensors(folder: Path, what: str) -> None:
    if not folder.is_dir():
        return  # a hub id: transformers picks safetensors there when the repository has them
    if any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth")):
        raise UserError(f"{what} folder {folder} holds pickled weights only (.bin/.pt); serve reads safetensors "
                        "alone (unpickling runs code): re-save it with save_pretrained(safe_serialization=True)")


def load_base(spec: ServeSpec, dtype: str = "fp32") -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) of a base or merged model; a GGUF file goes through models/load.py like a
    recipe's `model:` (de-quantized once into a cached folder, not at every start)."""
    _require_safetensors(Path(spec.base), "model")
    tokenizer = load_tokenizer(spec.base)
    model = load_model(spec.base, dtype=dtype, tokenizer=tokenizer, quantization=spec.quantization)
    return model.eval(), tokenizer


def saves_whole_modules(spec: ServeSpec) -> bool:
    """Whether the adapter of `spec` saves whole modules beside its layers (PEFT `modules_to_save`)."""
    config = spec.adapter / "adapter_config.json" if spec.adapter is not None else None
    if config is None or not config.is_file():
        return False
    return bool(read_adapter_config(config).get("modules_to_save"))


def load_processor_of(model: Any, spec: ServeSpec) -> Any:
    """A vision-language model's processor (saved beside its weights: a run's and a merge's folders hold it),
    which makes it take pictures; None for a text model."""
    if spec.base.endswith(".gguf"):
        return None
    return processor_if_vision(model, spec.base)


def load_chat_tokenizer(spec: ServeSpec) -> tuple[Any, str]:
    """(tokenizer with the served id's chat template, its end-of-turn text): the run's own template."""
    tokenizer = load_tokenizer(spec.tokenizer_source)
    apply_template(tokenizer, spec.template)
    return tokenizer, end_of_turn(tokenizer, spec.template)


def attach(model: Any, folder: Path) -> Any:
    """`model` with the adapter in `folder` (every kind; adapters.load_adapter), in eval mode."""
    return load_adapter(model, folder).eval()
