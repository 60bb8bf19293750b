"""The SmolLM2-135M-Instruct fixture (a Q4_1 GGUF in ../shared) as a Hugging Face folder, converted once.

The conversion is tunesmith's own (`tunesmith/gguf/source.py`: de-quantized once into a cache folder, the
GGUF quantizer state dropped), the same one `model: <file>.gguf` uses in a recipe. Used by
bench/eval_speed.py and the slow parity tests.
"""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
SMOLLM2_DIR = SHARED / "fixtures" / "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder(cache: Path | None = None) -> Path:
    """The converted folder (converting on first use, atomically); FileNotFoundError without the fixture."""
    from tunesmith.gguf.source import converted_folder

    gguf = SMOLLM2_DIR / GGUF_NAME
    if not gguf.is_file():
        raise FileNotFoundError(f"SmolLM2 fixture not found: {gguf}")
    return converted_folder(gguf, cache)
