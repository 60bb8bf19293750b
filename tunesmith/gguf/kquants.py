"""llama.cpp's K-quant encoders (Q4_K, Q5_K, Q6_K) in numpy, for `export --format gguf --outtype q4_k_m|...`.

The `gguf` package writes GGUF and de-quantizes every type, but quantizes only the simple ones (Q4_0..Q8_0,
BF16): its Q4_K/Q5_K/Q6_K are read-only. llama.cpp's own quantizer is C++ (`llama-quantize`, or
`llama_model_quantize` through the llama-cpp-python package, which PyPI serves only as source: building it
compiles ~250 C++ files). So this module follows llama.cpp's reference encoders (ggml-quants.c:
`quantize_row_q4_K_ref`, `quantize_row_q5_K_ref`, `quantize_row_q6_K_ref` with `make_qkx2_quants` and
`make_qx_quants`; the paths llama-quantize takes without an importance matrix), vectorized over blocks.

A super-block holds 256 weights of one row. Q4_K and Q5_K: 8 sub-blocks of 32, each with a 6-bit scale and a
6-bit min (weight = d * scale * q - dmin * min), q of 4 or 5 bits. Q6_K: 16 sub-blocks of 16, each with an
8-bit signed scale, q of 6 bits (weight = d * scale * (q - 32)). The byte layouts are the ones `gguf.quants`
decodes; tests/test_gguf_kquants.py checks each encoder through that decoder, and an exported model through
transformers' GGUF reader. Arithmetic is float32 as in C, but sums run in numpy's order, so a rare rounding
tie may land on the other side than in llama.cpp: the files are valid K-quant files of the same algorithm,
not byte-identical to llama-quantize's.
"""

from __future__ import annotations

import numpy as np

QK_K = 256
_EPS = 1e-15  # GROUP_MAX_EPS: a group whose largest |weight| is below this is all zeros
_CHUNK = 4096  # super-blocks encoded at once (bounds the temporary arrays to a few tens of MB)


def quantize_k(data: np.ndarray, kind: str) -> np.ndarray:
    """`data` (rows x columns, columns a multiple of 256) as `kind` ('Q4_K', 'Q5_K' or 'Q6_K') blocks:
    uint8, shaped (rows, bytes per row) as `gguf.GGUFWriter.add_tensor(..., raw_dtype=...)` takes them."""
    encode = {"Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k}[kind]
    rows, cols = data.shape
    if cols % QK_K:
        raise ValueError(f"{kind} needs rows of a multiple of {QK_K} weights, not {cols}")
    blocks = np.ascontiguousarray(data, dtype=np.float32).reshape(-1, QK_K)
    out = [encode(blocks[i:i + _CHUNK]) for i in range(0, len(blocks), _CHUNK)]
    return np.concatenate(out).reshape(rows, -1)


def _rint(x: np.ndarray) -> np.ndarray:
    """nearest_int: round half to even, as the float trick in ggml does."""
    return np.rint(x).astype(np.int32)


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16)


def _make_qkx2(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """make_qkx2_quants over groups (rows of x): levels L in [0, nmax], scale and min so x ~ scale * L - min,
    searching nstep + 1 candidate scales for the smallest weighted squared error. The error of a candidate is
    expanded into per-group sums (in float64) instead of summed weight by weight: the same quantity, 3x faster."""
    low = np.minimum(x.min(-1), 0)
    high = x.max(-1)
    flat = high == low
    span = np.where(flat, 1, high - low)
    sum_w, sum_x = w.sum(-1, dtype=np.float64), _dot(w, x)
    sum_x2 = _dot(w * x, x)

    def error(scale: np.ndarray, shift: np.ndarray, wl: np.ndarray, trial: np.ndarray) -> tuple:
        """sum w (scale * L + shift - x)^2, with the sums it needs."""
        sum_l, sum_l2, sum_xl = wl.sum(-1, dtype=np.float64), _dot(wl, trial), _dot(wl, x)
        err = (scale * scale * sum_l2 + shift * shift * sum_w + sum_x2
               + 2 * (scale * shift * sum_l - scale * sum_xl - shift * sum_x))
        return err, sum_l, sum_l2, sum_xl

    levels = np.clip(np.rint((nmax / span)[:, None] * (x - low[:, None])), 0, nmax)
    scale = (span / nmax).astype(np.float64)
    best = error(scale, low.astype(np.float64), w * levels, levels)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        for step in range(nstep + 1):
            iscale = ((rmin + rdelta * step + nmax) / span).astype(np.float32)
            trial = np.clip(np.rint(iscale[:, None] * (x - low[:, None])), 0, nmax)
            _, sum_l, sum_l2, sum_xl = error(scale, low, w * trial, trial)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            positive = this_min > 0
            this_scale = np.where(positive, sum_xl / sum_l2, this_scale)
            this_min = np.where(positive, 0, this_min)
            err = (this_scale * this_scale * sum_l2 + this_min * this_min * sum_w + sum_x2
                   + 2 * (this_scale * this_min * sum_l - this_scale * sum_xl - this_min * sum_x))
            better = (det > 0) & (err < best) & ~flat
            levels = np.where(better[:, None], trial, levels)
            best, scale = np.where(better, err, best), np.where(better, this_scale, scale)
            low = np.where(better, this_min, low).astype(np.float32)
            span = np.where(flat, 1, high - low)
    scale = np.where(flat, 0, scale)
    levels = np.where(flat[:, None], 0, levels)
    return scale.astype(np.float32), (-low).astype(np.float32), levels.astype(np.uint8)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise sum of a * b, in float64."""
    return np.einsum("ij,ij->i", a, b, dtype=np.float64)


def _q45_k(x: np.ndarray, nmax: int, rmin: float, nstep: int):
    """The part Q4_K and Q5_K share: per-sub-block scale and min, packed as 6 bits each into 12 bytes,
    the super-block's fp16 d and dmin, and the levels re-quantized against the stored scales."""
    n = len(x)
    sub = x.reshape(n * 8, 32)
    weights = np.sqrt((sub * sub).mean(-1, keepdims=True)) + np.abs(sub)
    scales, mins, levels = _make_qkx2(sub, weights, nmax, rmin, 0.1, nstep)
    scales, mins, levels = scales.reshape(n, 8), mins.reshape(n, 8), levels.reshape(n, 8, 32)
    max_scale = np.maximum(scales.max(-1), 0)
    max_min = np.maximum(mins.max(-1), 0)
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, 63 / max_scale, 0).astype(np.float32)
        inv_min = np.where(max_min > 0, 63 / max_min, 0).astype(np.float32)
    ls = np.clip(_rint(inv_scale[:, None] * scales), 0, 63).astype(np.uint8)
    lm = np.clip(_rint(inv_min[:, None] * mins), 0, 63).astype(np.uint8)
    packed = np.zeros((n, 12), np.uint8)
    packed[:, 0:4], packed[:, 4:8] = ls[:, :4] | ((ls[:, 4:] >> 4) << 6), lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
    d, dmin = _f16(max_scale / 63), _f16(max_min / 63)
    step = d.astype(np.float32)[:, None] * ls
    offset = dmin.astype(np.float32)[:, None] * lm
    with np.errstate(divide="ignore", invalid="ignore"):
        again = np.clip(_rint((x.reshape(n, 8, 32) + offset[..., None]) / step[..., None]), 0, nmax)
    levels = np.where((step != 0)[..., None], again, levels).reshape(n, QK_K).astype(np.uint8)
    return d, dmin, packed, levels


def _q4_k(x: np.ndarray) -> np.ndarray:
    """quantize_row_q4_K_ref: d, dmin (fp16), 12 bytes of scales/mins, 128 bytes of 4-bit levels."""
    d, dmin, packed, levels = _q45_k(x, 15, -1.0, 20)
    chunks = levels.reshape(len(x), 4, 2, 32)  # per 64 weights: low nibble the first 32, high the next 32
    qs = (chunks[:, :, 0] | (chunks[:, :, 1] << 4)).reshape(len(x), 128)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), packed, qs], -1)


def _q5_k(x: np.ndarray) -> np.ndarray:
    """quantize_row_q5_K_ref: as Q4_K, plus 32 bytes holding each level's fifth bit."""
    d, dmin, packed, levels = _q45_k(x, 31, -0.5, 15)
    chunks = levels.reshape(len(x), 4, 2, 32)
    qs = ((chunks[:, :, 0] & 0xF) | ((chunks[:, :, 1] & 0xF) << 4)).reshape(len(x), 128)
    high = (chunks >> 4).reshape(len(x), 8, 32)  # bit b of qh[j] is the fifth bit of weight 32 * b + j
    qh = (high << np.arange(8, dtype=np.uint8)[None, :, None]).sum(1).astype(np.uint8)
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), packed, qh, qs], -1)


def _make_qx(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """make_qx_quants with rmse_type 1 (weights x^2): signed levels in [-nmax, nmax) and a scale, trying
    19 candidate scales around nmax / max for the best weighted fit."""
    pick = np.abs(x).argmax(-1)
    peak = np.take_along_axis(x, pick[:, None], -1)[:, 0]
    zero = np.abs(peak) < _EPS
    peak = np.where(zero, 1, peak)
    w = x * x

    wx = w * x

    def fit(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        levels = np.clip(np.rint(iscale[:, None] * x), -nmax, nmax - 1)
        return levels, _dot(wx, levels), _dot(w * levels, levels)

    levels, sumlx, suml2 = fit((-nmax / peak).astype(np.float32))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 > 0, sumlx / suml2, 0)
        best = scale * sumlx
        for step in [s for s in range(-9, 10) if s]:
            trial, slx, sl2 = fit((-(nmax + 0.1 * step) / peak).astype(np.float32))
            better = (sl2 > 0) & (slx * slx > best * sl2)
            levels = np.where(better[:, None], trial, levels)
            scale = np.where(better, slx / sl2, scale)
            best = np.where(better, scale * slx, best)
    return np.where(zero, 0, scale).astype(np.float32), np.where(zero[:, None], 0, levels + nmax).astype(np.uint8)


def _q6_k(x: np.ndarray) -> np.ndarray:
    """quantize_row_q6_K_ref: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 int8 scales, fp16 d."""
    n = len(x)
    scales, levels = _make_qx(x.reshape(n * 16, 16), 32)
    scales, levels = scales.reshape(n, 16), levels.reshape(n, 16, 16)
    pick = np.abs(scales).argmax(-1)
    max_scale = np.take_along_axis(scales, pick[:, None], -1)[:, 0]
    empty = np.abs(max_scale) < _EPS
    iscale = np.where(empty, 0, -128 / np.where(empty, 1, max_scale)).astype(np.float32)
    with np.errstate(divide="ignore"):
        d = _f16(np.where(empty, 0, 1 / np.where(empty, 1, iscale)))
    small = np.minimum(127, _rint(iscale[:, None] * scales)).astype(np.int8)
    step = d.astype(np.float32)[:, None] * small
    with np.errstate(divide="ignore", invalid="ignore"):
        again = np.clip(_rint(x.reshape(n, 16, 16) / step[..., None]), -32, 31) + 32
    levels = np.where((step != 0)[..., None], again, levels).reshape(n, 2, 4, 32).astype(np.uint8)
    low, high = levels & 0xF, levels >> 4  # per 128 weights: four runs of 32
    ql = np.concatenate([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], -1)
    qh = high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)
    small = np.where(empty[:, None], 0, small)
    out = np.concatenate([ql.reshape(n, 128), qh.reshape(n, 64), small.view(np.uint8), d.view(np.uint8).reshape(-1, 2)], -1)
    return np.where(empty[:, None], 0, out).astype(np.uint8)
