"""`POST /v1/adapters {"name", "path"}`: the folder a client names, checked as the untrusted input it is,
turned into a served id.

`path` is relative to `--adapter-root` and may name an adapter folder or a run folder (its adapter is found
the way every CLI verb finds it, through runs/targets.py). Every refusal is a 4xx naming the reason: a path
outside the root (or with a NUL), a folder with no adapter, an unreadable or malformed adapter_config.json, a
full fine-tune instead of an adapter, no tokenizer beside the adapter, and a base model the server may not
load. The base is confined too: it must be a base this server already holds, or a model folder inside the
adapter root, never any folder or hub id the adapter's config names.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.adapters.folder import read_adapter_config
from tunesmith.errors import UserError
from tunesmith.runs.targets import ADAPTER_CONFIG, Target, resolve_target
from tunesmith.serve import targets
from tunesmith.serve.errors import ApiError
from tunesmith.serve.store import Entry, ModelStore
from tunesmith.serve.targets import ServeSpec


def load_requested(store: ModelStore, name: str, path: str) -> Entry:
    """Load the adapter at `path` (under the adapter root) as `name`; ApiError 4xx for every bad folder."""
    try:
        targets.check_name(name)
    except UserError as e:
        raise ApiError(400, str(e), param="name") from None
    spec = requested_spec(store, name, path)
    return store.add_adapter(spec, path)


def requested_spec(store: ModelStore, name: str, path: str) -> ServeSpec:
    """The served id for the adapter or run folder `path`, every folder it leads to confined."""
    folder = store.confine(path)
    target = _target(folder, path)
    if target.adapter is None:
        raise ApiError(400, f"'{path}' holds full weights (a full fine-tune or a model), not an adapter; serve it "
                       "by naming it as a TARGET when starting tunesmith serve", param="path")
    adapter = _inside(store, target.adapter, f"the adapter folder of '{path}'")
    if not targets.has_tokenizer(adapter):
        raise ApiError(400, f"adapter folder '{path}' holds no tokenizer ({', '.join(targets.TOKENIZER_FILES)}); "
                       "save the tokenizer beside the adapter (tokenizer.save_pretrained), as tunesmith runs do",
                       param="path")
    if not any(adapter.glob("*.safetensors")):
        raise ApiError(400, f"adapter folder '{path}' holds no adapter weights (*.safetensors); save it with "
                       "save_pretrained (pickled .bin/.pt weights are refused: unpickling runs code)", param="path")
    base = confined_base(store, target.model, target.quantization, path)
    try:
        spec = targets.adapter_spec(name, adapter, base, target.template)
    except UserError as e:
        raise ApiError(400, str(e), param="path") from None
    return ServeSpec(spec.name, spec.base, spec.kind, spec.template, spec.adapter, target.quantization)


def confined_base(store: ModelStore, base: str, quantization: str | None, path: str) -> str:
    """`base` as the server may load it: the name of a base it already holds, or a folder (or GGUF file)
    inside the adapter root; a 400 for anything else."""
    for held in store.bases.values():
        if held.spec.quantization == quantization and _same(held.spec.base, base):
            return held.spec.base
    where = Path(base).expanduser()
    if "\x00" not in base and where.exists():
        return str(_inside(store, where, f"the base model '{base}' of '{path}'"))
    held_names = ", ".join(sorted(b.spec.base for b in store.bases.values())) or "none"
    raise ApiError(400, f"the base model '{base}' named by '{path}' is neither a base this server holds "
                   f"({held_names}) nor a folder under the adapter root; start the server with that base (or a "
                   "run over it) as a TARGET", param="path")


def _target(folder: Path, path: str) -> Target:
    """The run or adapter folder resolved like a CLI TARGET; its config checked first (untrusted input)."""
    if (folder / ADAPTER_CONFIG).is_file():
        try:
            read_adapter_config(folder / ADAPTER_CONFIG)
        except UserError as e:
            raise ApiError(400, str(e), param="path") from None
    try:
        return resolve_target(str(folder))
    except UserError as e:
        raise ApiError(400, str(e), param="path") from None
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        raise ApiError(400, f"cannot read the adapter or run folder '{path}': {type(e).__name__}: {e}",
                       param="path") from None


def _inside(store: ModelStore, folder: Path, what: str) -> Path:
    resolved = Path(folder).resolve()
    if store.adapter_root is None or not resolved.is_relative_to(store.adapter_root):
        raise ApiError(400, f"{what} is outside the adapter root; only folders under it may be loaded",
                       param="path")
    return resolved


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
