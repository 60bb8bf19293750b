"""The SmolLM2-135M-Instruct fixture (a Q4_1 GGUF in ../shared) as a Hugging Face folder, converted once.

transformers de-quantizes a GGUF file on load (~20 s or more) and keeps a GGUF quantizer on the model that
makes `save_pretrained` refuse; so the bench and the tests convert it once into a cache folder (float32
safetensors + tokenizer with its chat template), dropping the quantizer state, and every later run loads
that folder like any model. Used by bench/eval_speed.py and the slow parity tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SMOLLM2_DIR = SHARED / "fixtures" / "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = "converted.txt"


def default_cache() -> Path:
    """$TUNESMITH_BENCH_CACHE, else ~/.cache/tunesmith-bench."""
    return Path(os.environ.get("TUNESMITH_BENCH_CACHE", Path.home() / ".cache" / "tunesmith-bench"))


def smollm2_folder(cache: Path | None = None) -> Path:
    """The converted folder (converting on first use, atomically); FileNotFoundError without the fixture."""
    gguf = SMOLLM2_DIR / GGUF_NAME
    if not gguf.is_file():
        raise FileNotFoundError(f"SmolLM2 fixture not found: {gguf}")
    root = cache or default_cache()
    out = root / f"smollm2-135m-instruct-{gguf.stat().st_size}"
    if (out / _DONE).is_file():
        return out
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=root))
    try:
        _convert(gguf, staging)
        if out.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are plain float32 tensors already
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / _DONE).write_text(f"converted from {gguf}\n")
