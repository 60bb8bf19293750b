"""What a GGUF file's weights are stored as (F16, Q4_1, Q4_K, ...), read from its header alone.

Users are told what they hand over: a GGUF of F16 weights is not "quantized", and de-quantizing a Q4_1 file
is not the same as reading an F16 one. `gguf.GGUFReader` would answer too, but it parses every vocabulary
entry into Python objects (seconds for a 49k vocabulary); this walks the header, skipping values, and reads
only the tensor types (milliseconds).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from tunesmith.errors import UserError

_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
"""Byte size of each GGUF scalar value type (8: string and 9: array have a length)."""
_STRING, _ARRAY = 8, 9
UNQUANTIZED = ("F32", "F16", "BF16", "F64")


def gguf_weight_types(path: Path) -> Counter[str]:
    """How many matrices (tensors of two or more dimensions) of each ggml type the file holds, by type name."""
    import gguf

    try:
        with Path(path).open("rb") as f:
            head = f.read(24)
            if head[:4] != b"GGUF":
                raise UserError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
            _magic, _version, tensors, kvs = struct.unpack("<4sIQQ", head)
            for _ in range(kvs):
                _skip_string(f)
                _skip_value(f, _u32(f))
            types: Counter[str] = Counter()
            for _ in range(tensors):
                _skip_string(f)
                dims = _u32(f)
                f.read(8 * dims)
                kind = _u32(f)
                f.read(8)  # offset
                if dims >= 2:
                    types[gguf.GGMLQuantizationType(kind).name] += 1
    except (struct.error, ValueError) as e:
        raise UserError(f"cannot read the header of GGUF file {path}: {e}") from e
    return types


def describe_weights(types: Mapping[str, int]) -> str:
    """'Q4_1-quantized weights (1 matrix Q8_0)' or 'F16 weights, not quantized', from gguf_weight_types."""
    if not types:
        return "no weight matrices"
    main = max(types, key=lambda t: types[t])
    others = ", ".join(f"{n} {'matrix' if n == 1 else 'matrices'} {t}" for t, n in types.items() if t != main)
    kind = f"{main} weights, not quantized" if main in UNQUANTIZED else f"{main}-quantized weights"
    return f"{kind}{f' ({others})' if others else ''}"


def _u32(f: BinaryIO) -> int:
    return struct.unpack("<I", f.read(4))[0]


def _skip_string(f: BinaryIO) -> None:
    f.seek(struct.unpack("<Q", f.read(8))[0], 1)


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind == _STRING:
        _skip_string(f)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", f.read(12))
        if item in _SCALARS:
            f.seek(_SCALARS[item] * count, 1)
        else:
            for _ in range(count):
                _skip_value(f, item)
    elif kind in _SCALARS:
        f.seek(_SCALARS[kind], 1)
    else:
        raise ValueError(f"unknown GGUF value type {kind}")
