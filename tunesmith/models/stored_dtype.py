"""The dtype a base checkpoint is stored in: what a merged model should be saved in by default.

A run's `model_options.dtype: auto` is the training *compute* type (bf16 on this CPU), not a statement about
the weights: a base stored in fp32 and merged into bf16 loses precision the user never asked to lose
(stories260k: the merged logits then differ from fp32 base + adapter by 0.10). So `merge` keeps the base's
own dtype unless `--dtype` says otherwise.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from tunesmith.models.load import DTYPES, load_config

_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def stored_dtype(path_or_id: str) -> torch.dtype:
    """The base's floating dtype: its config's `dtype` (or `torch_dtype`) when it names one, else the first
    floating tensor of its safetensors file, else float32 (what transformers loads by default)."""
    config = load_config(path_or_id)
    named = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(named, torch.dtype) and named.is_floating_point:
        return named
    if isinstance(named, str) and named in DTYPES:
        return DTYPES[named]
    folder = Path(config._name_or_path)
    return _safetensors_dtype(folder) or torch.float32


def _safetensors_dtype(folder: Path) -> torch.dtype | None:
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, entry in header.items():
            if name != "__metadata__" and entry.get("dtype") in _SAFETENSORS_DTYPES:
                return _SAFETENSORS_DTYPES[entry["dtype"]]
    return None
