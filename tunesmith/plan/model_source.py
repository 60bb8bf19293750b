"""A model's config and tokenizer for planning, without loading (or de-quantizing) its weights.

`plan` and `advise` take every `model:` that `train` takes. A folder, a hub id or a run's mistakes go through
the model loader's own `load_config` (tunesmith/models/load.py). A GGUF file (or a folder holding one, found by the
loader's own `find_gguf`) is read from its metadata alone: transformers builds the config and the tokenizer
from the GGUF header (`load_gguf_checkpoint(..., return_tensors=False)` under `AutoConfig`/`AutoTokenizer`),
a few seconds, where the loader's conversion de-quantizes every tensor into an fp32 copy first (minutes).
When that copy is already in the cache (a run trained on the file), its config.json and tokenizer.json are
read instead: parsing the GGUF's vocabulary takes seconds, the copy's files milliseconds. Both give the same
tokenizer (the data cache's fingerprint is equal), so the tokens `plan` counts are the ones `train` reuses.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.gguf.source import cached_conversion, find_gguf


def read_config(model: str, trust_remote_code: bool = False) -> Any:
    """The transformers config of `model` (folder, hub id in the local cache, GGUF file or folder holding one)."""
    gguf_file = find_gguf(model)
    if gguf_file is None or cached_conversion(gguf_file) is not None:
        from tunesmith.models.load import load_config

        return load_config(model, trust_remote_code=trust_remote_code)
    from transformers import AutoConfig

    try:
        with metadata_read_once():
            return AutoConfig.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot read the metadata of GGUF file '{gguf_file}': {err}; check that the file is "
                        "whole (re-download it) and that `pip install gguf` succeeded") from None


def read_tokenizer(model: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of `model`, ready to count tokens; a GGUF's comes from its metadata (no conversion)."""
    gguf_file = find_gguf(model)
    if gguf_file is None or cached_conversion(gguf_file) is not None:
        from tunesmith.models.load import load_tokenizer

        return load_tokenizer(model, trust_remote_code=trust_remote_code)
    return _gguf_tokenizer(gguf_file)


def _gguf_tokenizer(gguf_file: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        with metadata_read_once():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot read the tokenizer of GGUF file '{gguf_file}': {err}") from None
    if tokenizer.pad_token is None:  # as models.load_tokenizer: training pads with eos (or unk)
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


@functools.lru_cache(maxsize=4)
def _metadata(read: Any, path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """`read(path)`'s metadata, once per file content (size and mtime) and reader."""
    return read(path, return_tensors=False)


@contextmanager
def metadata_read_once() -> Iterator[None]:
    """Within the block, transformers' GGUF metadata reads (`return_tensors=False`) of one file parse it once:
    AutoTokenizer alone parses the whole header twice, AutoConfig once more, and parsing SmolLM2's 49k-token
    vocabulary takes 5-30 s each time. Reads that want tensors go to transformers untouched; each caller gets
    its own copy, as transformers may change what it is given."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    real = gguf_utils.load_gguf_checkpoint

    def once(path: Any, return_tensors: bool = False, **kwargs: Any) -> dict[str, Any]:
        if return_tensors or kwargs:
            return real(path, return_tensors=return_tensors, **kwargs)
        stat = Path(path).stat()
        return copy.deepcopy(_metadata(real, str(path), stat.st_size, stat.st_mtime_ns))

    gguf_utils.load_gguf_checkpoint = once
    try:
        yield
    finally:
        gguf_utils.load_gguf_checkpoint = real
