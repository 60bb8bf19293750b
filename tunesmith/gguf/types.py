"""Which ggml type each tensor of an exported GGUF gets, for each `--outtype`, and its encoding.

q4_k_m, q5_k_m and q6_k are the files Ollama users pull. They are mixes, as llama.cpp's `llama-quantize`
makes them (llama-quant.cpp, `llama_tensor_get_type`, without an importance matrix):
- the output head (or, when it is tied, the token embedding) is Q6_K;
- q4_k_m and q5_k_m give Q6_K to `attn_v` and `ffn_down` of the layers `use_more_bits` picks (the first and
  last eighth, and every third between), Q4_K or Q5_K to every other matrix; q6_k is Q6_K throughout;
- a matrix whose rows are not a multiple of 256 wide falls back as llama.cpp does (Q4_K to Q5_0, Q5_K to
  Q5_1, Q6_K to Q8_0; then F16 if not a multiple of 32 either); vectors (norms, biases) stay F32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tunesmith.gguf.kquants import QK_K, quantize_k

OUTTYPES = ("f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
_BASE = {"f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_k_m": "Q4_K", "q5_k_m": "Q5_K", "q6_k": "Q6_K"}
_FILE_TYPE = {"f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0", "q4_k_m": "MOSTLY_Q4_K_M",
              "q5_k_m": "MOSTLY_Q5_K_M", "q6_k": "MOSTLY_Q6_K"}
_K_QUANTS = ("Q4_K", "Q5_K", "Q6_K")
_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q8_0": "F16", "Q5_0": "F16", "Q5_1": "F16"}
_BLOCK = {"Q4_K": QK_K, "Q5_K": QK_K, "Q6_K": QK_K, "Q8_0": 32, "Q5_0": 32, "Q5_1": 32, "F16": 1, "BF16": 1}


def file_type(outtype: str) -> Any:
    """The `general.file_type` llama.cpp records for `outtype` (a gguf.LlamaFileType)."""
    import gguf

    return gguf.LlamaFileType[_FILE_TYPE[outtype]]


def use_more_bits(layer: int, layers: int) -> bool:
    """llama.cpp's choice of the layers whose attn_v and ffn_down get more bits in the _M mixes."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def tensor_type(name: str, columns: int, outtype: str, layers: int, tied: bool) -> str:
    """The ggml type name of matrix `name` (llama.cpp's tensor name) with rows `columns` wide."""
    kind = _BASE[outtype]
    if kind in _K_QUANTS:
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            kind = "Q8_0" if columns % QK_K else "Q6_K"
        elif outtype in ("q4_k_m", "q5_k_m") and name.endswith(("attn_v.weight", "ffn_down.weight")):
            if use_more_bits(int(name.split(".")[1]), layers):
                kind = "Q6_K"
    while columns % _BLOCK[kind]:
        kind = _FALLBACK[kind]
    return kind


def encode(data: np.ndarray, kind: str) -> tuple[np.ndarray, Any]:
    """(bytes or values, raw_dtype) for `gguf.GGUFWriter.add_tensor`: F16 as float16 values, every other type
    as its blocks (K-quants by tunesmith's encoder, the rest by the gguf package's)."""
    import gguf

    if kind == "F16":
        return data.astype(np.float16), None
    qtype = gguf.GGMLQuantizationType[kind]
    if kind in _K_QUANTS:
        return quantize_k(data, kind), qtype
    return gguf.quants.quantize(data, qtype), qtype
