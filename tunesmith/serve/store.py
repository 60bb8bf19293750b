"""The models a server holds: bases, merged models and adapters, loaded on demand under an LRU bound.

Each base is loaded once. Its LoRA and DoRA adapters live in one PEFT model over it (sharing its weights):
LoRA rows of different adapters and base rows run in one batch through PEFT's `adapter_names=`; PEFT refuses
DoRA there, so a DoRA adapter runs its own batches (`set_adapter`). IA3, prefix, prompt and bottleneck
adapters each run on their own copy of the base, loaded from disk: PEFT cannot stack them with LoRA layers
on shared modules.

Adapters are a cache: every registered adapter has a folder, at most `max_adapters` are in memory, and the
least recently used one is dropped to make room (it is loaded again from its folder when asked for). Requests
hold a reference to their model id from admission to their last token, so `remove` lets in-flight requests
finish before the adapter goes. New adapters come only from folders under the adapter root (serve/loading.py checks them).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import PeftModel

from tunesmith.adapters.kinds import picture_kinds
from tunesmith.adapters.unit import Serving
from tunesmith.errors import UserError
from tunesmith.evaluate.loglik import max_context
from tunesmith.serve import targets
from tunesmith.serve.errors import ApiError, not_found
from tunesmith.serve.limits import max_token_chars
from tunesmith.serve.targets import ServeSpec


@dataclass
class Base:
    """One loaded base (or merged / GGUF) model; `peft` wraps it once a LoRA or DoRA adapter is loaded."""

    spec: ServeSpec
    model: Any
    tokenizer: Any
    context: int
    peft: Any = None
    processor: Any = None
    """A vision-language model's processor (pictures and text into model inputs); None for a text model."""

    @property
    def key(self) -> str:
        return f"{self.spec.base}|{self.spec.quantization}"


@dataclass
class Entry:
    """One served model id and where its rows run."""

    spec: ServeSpec
    base: Base
    tokenizer: Any
    stop_text: str
    module: Any = None
    resident: bool = False
    token_chars: int = 1
    """The most characters one token stands for (serve/limits.py: prompts refused before tokenizing)."""
    refs: int = 0
    draining: bool = False
    own_copy: bool = False
    """An adapter that replaces whole modules (PEFT `modules_to_save`, e.g. a VLM's trained projector): PEFT
    cannot mix those with other rows by `adapter_names`, so it runs alone on its own copy of the base."""
    last_used: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def takes_images(self) -> bool:
        """Whether requests may send this model pictures: its base has a processor that reads them, and its
        adapter (if any) is of a kind that reads pictures (adapters/unit.py `reads_pictures`)."""
        return self.base.processor is not None and self.image_refusal() is None

    def image_refusal(self) -> str | None:
        """Why pictures are refused for this id although its base reads them, or None."""
        kind = self.spec.adapter_kind
        if self.base.processor is None or kind is None or kind.reads_pictures:
            return None
        return (f"'{self.name}' is a {kind.name} adapter, which does not read pictures (adapters of kinds "
                f"{picture_kinds()} do); send text only")

    @property
    def is_adapter(self) -> bool:
        return self.spec.kind != "model"

    @property
    def group(self) -> str:
        """Rows with equal groups can share a batch: a base with its LoRA adapters, anything else alone."""
        if self.spec.serving in (Serving.MODEL, Serving.PEFT_MIXED) and not self.own_copy:
            return f"mix:{self.base.key}"
        return f"one:{self.name}"


class ModelStore:
    """Served ids -> loaded models; thread-safe. `lock` is held while a batch runs or an adapter (un)loads."""

    def __init__(self, specs: list[ServeSpec], adapter_root: Path | None = None, max_adapters: int = 8,
                 dtype: str = "fp32") -> None:
        self.adapter_root = adapter_root.resolve() if adapter_root is not None else None
        self.max_adapters, self.dtype = max(1, max_adapters), dtype
        self.lock = threading.RLock()
        self._refs = threading.Condition()
        self.bases: dict[str, Base] = {}
        self.entries: dict[str, Entry] = {}
        for spec in specs:
            self._register(spec)
        with self.lock:
            for entry in [e for e in self.entries.values() if e.is_adapter][: self.max_adapters]:
                self.ensure_resident({entry.name})

    def names(self) -> list[str]:
        return [name for name, entry in self.entries.items() if not entry.draining]

    def acquire(self, name: str) -> Entry:
        """The entry for a request's `model`, referenced until `release`; 404 when unknown or being removed."""
        with self._refs:
            entry = self.entries.get(name)
            if entry is None or entry.draining:
                raise not_found(name, self.names())
            entry.refs += 1
            return entry

    def release(self, entry: Entry) -> None:
        with self._refs:
            entry.refs -= 1
            self._refs.notify_all()

    def ensure_resident(self, names: set[str]) -> None:
        """Load the adapters of `names` not in memory, evicting the least recently used others. Hold `lock`."""
        now = time.monotonic()
        for name in names:
            entry = self.entries[name]
            entry.last_used = now
            if entry.resident or not entry.is_adapter:
                continue
            resident = sorted((e for e in self.entries.values() if e.resident and e.is_adapter and e.name not in names),
                              key=lambda e: e.last_used)
            while resident and len(resident) + 1 > self.max_adapters:
                self._unload(resident.pop(0))
            self._load(entry)

    def add_adapter(self, spec: ServeSpec, path: str) -> Entry:
        """Register and load the adapter `spec` (checked by serve/loading.py; `path` as the client gave it).
        A folder that fails to load is a 400 naming the reason, and leaves nothing behind."""
        with self.lock:
            if spec.name in self.entries:
                raise ApiError(409, f"A model named '{spec.name}' is already served; delete it first or pick "
                               "another name", code="model_exists", param="name")
            bases = set(self.bases)
            try:
                self._register(spec)
                self.ensure_resident({spec.name})
            except Exception as e:  # noqa: BLE001 -- any load failure of an untrusted folder: undo, report as 400
                self.entries.pop(spec.name, None)
                for key in set(self.bases) - bases:
                    del self.bases[key]
                raise ApiError(400, f"cannot load adapter '{path}': {type(e).__name__}: {e}", param="path") from None
        return self.entries[spec.name]

    def remove_adapter(self, name: str, timeout_s: float = 300.0) -> None:
        """Stop admitting requests for `name`, wait for its in-flight ones, then unload it."""
        with self._refs:
            entry = self.entries.get(name)
            if entry is None or entry.draining:
                raise not_found(name, self.names())
            if not entry.is_adapter:
                raise ApiError(400, f"'{name}' is a base model, not an adapter; only adapters can be unloaded",
                               param="name")
            entry.draining = True
            if not self._refs.wait_for(lambda: entry.refs == 0, timeout=timeout_s):
                entry.draining = False
                raise ApiError(503, f"'{name}' still has requests in flight after {timeout_s:.0f} s; try again",
                               type_="server_overloaded")
        with self.lock:
            if entry.resident:
                self._unload(entry)
            del self.entries[name]

    def confine(self, path: str) -> Path:
        """`path` resolved inside the adapter root; anything outside it (.., absolute, symlinks) is refused."""
        if self.adapter_root is None:
            raise ApiError(403, "loading adapters needs the server started with --adapter-root DIR",
                           type_="permission_error")
        if "\x00" in path:
            raise ApiError(400, "path contains a NUL character", param="path")
        folder = (self.adapter_root / path).resolve()
        if not folder.is_relative_to(self.adapter_root):
            raise ApiError(400, f"path '{path}' is outside the adapter root", param="path")
        if not folder.is_dir():
            raise ApiError(404, f"no adapter folder '{path}' under the adapter root", param="path",
                           code="adapter_not_found")
        return folder

    def _register(self, spec: ServeSpec) -> Entry:
        if spec.name in self.entries:
            raise UserError(f"two targets are served as '{spec.name}'; name one with NAME=TARGET")
        key = f"{spec.base}|{spec.quantization}"
        if key not in self.bases:
            base_spec = spec if spec.kind == "model" else ServeSpec(targets.base_name(spec.base), spec.base,
                                                                     "model", quantization=spec.quantization)
            model, tokenizer = targets.load_base(base_spec, self.dtype)
            self.bases[key] = Base(base_spec, model, tokenizer, max_context(model),
                                   processor=targets.load_processor_of(model, base_spec))
        base = self.bases[key]
        tokenizer, stop = targets.load_chat_tokenizer(spec)
        entry = Entry(spec, base, tokenizer, stop, resident=spec.kind == "model",
                      token_chars=max_token_chars(tokenizer), own_copy=targets.saves_whole_modules(spec))
        self.entries[spec.name] = entry
        return entry

    def _load(self, entry: Entry) -> None:
        base, folder = entry.base, entry.spec.adapter
        if entry.spec.serving.shares_base and not entry.own_copy:
            try:
                if base.peft is None:
                    base.peft = PeftModel.from_pretrained(base.model, str(folder), adapter_name=entry.name).eval()
                else:
                    base.peft.load_adapter(str(folder), adapter_name=entry.name)
                    base.peft.eval()
            except Exception:
                self._undo_lora(entry)
                raise
        else:
            fresh, _ = targets.load_base(base.spec, self.dtype)
            entry.module = targets.attach(fresh, folder)
        entry.resident = True

    def _undo_lora(self, entry: Entry) -> None:
        """Take out what a failed LoRA/DoRA load left in the shared base: PEFT injects the adapter's layers
        before it reads the weights, so a bad weights file would leave them in every later batch."""
        base = entry.base
        if base.peft is not None and entry.name in base.peft.peft_config:
            base.peft.delete_adapter(entry.name)
        elif base.peft is None and getattr(base.model, "peft_config", None) is not None:
            base.model, _ = targets.load_base(base.spec, self.dtype)  # changed in place: read it again

    def _unload(self, entry: Entry) -> None:
        base = entry.base
        if entry.spec.serving.shares_base and not entry.own_copy:
            if len(base.peft.peft_config) == 1:  # PEFT cannot run with no adapter left: take its layers out
                base.model = base.peft.unload()
                base.peft = None
            else:
                base.peft.delete_adapter(entry.name)
        entry.module = None
        entry.resident = False
