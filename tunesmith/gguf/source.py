"""A GGUF file as a base model: `model: path/to/model.gguf` (or a folder holding one), as Ollama and
llama.cpp users have it.

transformers reads GGUF (with the `gguf` package) and de-quantizes every tensor; that takes ~20 s or more
for a 135M-parameter model, and the model it returns keeps a GGUF quantizer that makes `save_pretrained`
refuse. So we convert a GGUF file once into an ordinary Hugging Face folder (float32 safetensors, config,
tokenizer with its chat template) in tunesmith's cache, keyed by the file's content, and hand that folder to
everything downstream: training, eval, merge and export then see a normal model. The user is told once per
process what the file's weights are (F16 weights are not quantized; Q4_1 ones are de-quantized, so training
starts from them, not from the original full-precision model), and when the copy is written, its size and
path (a 135M-parameter model takes 538 MB in float32) and that deleting it is safe.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from tunesmith.errors import UserError
from tunesmith.gguf.header import UNQUANTIZED, describe_weights, gguf_weight_types

logger = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
_DONE = "tunesmith-gguf.txt"
"""Written last into a converted folder: its presence means the conversion finished."""
_WARNED: set[Path] = set()


def find_gguf(path_or_id: str) -> Path | None:
    """The GGUF file `path_or_id` names: the file itself, or the single `.gguf` file of a folder that holds no
    config.json. None when it names no GGUF (a Hugging Face folder, a hub id). Two GGUF files in one folder
    are ambiguous: the user must pick one."""
    path = Path(path_or_id).expanduser()
    if path.is_file():
        return path if path.suffix.lower() == GGUF_SUFFIX else None
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == GGUF_SUFFIX)
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise UserError(f"folder '{path_or_id}' holds several GGUF files ({names}); set model: to one of them")
    return files[0] if files else None


def gguf_cache_root() -> Path:
    """`$TUNESMITH_CACHE/gguf`, else `tunesmith/gguf` in $XDG_CACHE_HOME or ~/.cache (beside the data cache)."""
    from tunesmith.data.cache import cache_dir

    return cache_dir().parent / "gguf"


def converted_folder(gguf_file: Path, cache_root: Path | None = None) -> Path:
    """The Hugging Face folder converted from `gguf_file`, converting it on first use (atomically, so a
    half-written folder is never used, and two processes converting at once both end with a whole one)."""
    root = cache_root or gguf_cache_root()
    target = _target(gguf_file, root)
    if target not in _WARNED:  # once per process and file, though config, tokenizer and weights each resolve it
        _WARNED.add(target)
        _tell_what_is_used(gguf_file, target)
    if (target / _DONE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=root))
    try:
        _convert(gguf_file, staging)
        if target.exists():  # another process finished first; keep its folder
            shutil.rmtree(staging, ignore_errors=True)
        else:
            os.replace(staging, target)
            logger.warning("wrote %s: the float32 copy of %s, %s of disk. Delete that folder to free the space "
                           "(it is made again when needed); TUNESMITH_CACHE=DIR keeps these copies in DIR/gguf/",
                           target, gguf_file.name, _megabytes(folder_bytes(target)))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _tell_what_is_used(gguf_file: Path, target: Path) -> None:
    """One warning: what the file's weights are (F16 is not quantized) and that a float32 copy stands in."""
    types = gguf_weight_types(gguf_file)
    quantized = any(t not in UNQUANTIZED for t in types)
    made = f"made once, {_megabytes(folder_bytes(target))}" if (target / _DONE).is_file() else "made now"
    logger.warning("%s holds %s: it is used through a float32 Hugging Face copy%s (what training starts from "
                   "and what is served; %s: %s)", gguf_file.name, describe_weights(types),
                   " of the de-quantized weights" if quantized else "", made, target)


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (what deleting it frees)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


def cached_conversion(gguf_file: Path, cache_root: Path | None = None) -> Path | None:
    """The converted folder of `gguf_file` when a finished one is in the cache, else None (never converts):
    for readers of the config or tokenizer alone (plan, advise), which otherwise read the GGUF's metadata."""
    target = _target(gguf_file, cache_root or gguf_cache_root())
    return target if (target / _DONE).is_file() else None


def _target(gguf_file: Path, root: Path) -> Path:
    return root / f"{gguf_file.stem}-{_file_digest(gguf_file.resolve(), *_identity(gguf_file))[:16]}"


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=16)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of the file's bytes; memoized per (path, size, mtime) since config, tokenizer and weights
    each resolve the model once."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert(gguf_file: Path, out: Path) -> None:
    """Load through transformers' GGUF reader (de-quantized to float32, which holds every de-quantized
    value exactly) and save as safetensors, without the GGUF quantizer state."""
    if _missing_gguf_package():
        raise UserError(f"model '{gguf_file}' is a GGUF file; reading it needs the gguf package: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"transformers cannot load GGUF file '{gguf_file}': {e}") from e
    drop_quantizer(model)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _DONE).write_text(f"converted from {gguf_file.resolve()} ({_identity(gguf_file)[0]} bytes)\n")


def drop_quantizer(model: torch.nn.Module) -> None:
    """Forget the GGUF quantizer a de-quantized model keeps: its weights are plain tensors already, but
    `save_pretrained` refuses while `hf_quantizer` is set, and the saved config would claim GGUF quantization."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _missing_gguf_package() -> bool:
    import importlib.util

    return importlib.util.find_spec("gguf") is None
