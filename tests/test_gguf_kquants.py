"""K-quant export (q4_k_m, q5_k_m, q6_k): tunesmith's encoders decode through the `gguf` package's own
de-quantizer, follow llama.cpp's reference search, mix types per tensor as llama-quantize does, and the
exported file loads in transformers with logits near the model's."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.test_gguf_export import logits_gap
from tunesmith.errors import UserError
from tunesmith.gguf.export import TOLERANCE, export_gguf
from tunesmith.gguf.header import gguf_weight_types
from tunesmith.gguf.kquants import _make_qkx2, quantize_k
from tunesmith.gguf.types import tensor_type
from tunesmith.testing.tiny import save_tiny


def _relative_rmse(kind: str, x: np.ndarray, blocks: np.ndarray) -> float:
    back = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType[kind])
    return float(np.sqrt(((back - x) ** 2).mean() / (x ** 2).mean()))


@pytest.mark.parametrize(("kind", "simpler", "bound"), [("Q4_K", "Q4_1", 0.075), ("Q5_K", "Q5_1", 0.038),
                                                        ("Q6_K", "Q5_1", 0.019)])
def test_encoders_decode_through_the_gguf_package(kind: str, simpler: str, bound: float) -> None:
    """Through gguf's decoder the error is what the format allows (measured 0.071, 0.036, 0.018 of the
    weights' RMS on Gaussian rows), and below the simpler format of as many or fewer bits: a byte in the wrong
    place, or a wrong sign of the min, shows as an error near 1."""
    x = np.random.default_rng(0).standard_normal((64, 512)).astype(np.float32) * 0.02
    blocks = quantize_k(x, kind)
    assert blocks.dtype == np.uint8 and blocks.shape == (64, 2 * gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]][1])
    error = _relative_rmse(kind, x, blocks)
    simple = gguf.GGMLQuantizationType[simpler]
    assert error < bound and error < _relative_rmse(simpler, x, gguf.quants.quantize(x, simple))
    zeros = np.zeros((2, 256), np.float32)
    assert not gguf.quants.dequantize(quantize_k(zeros, kind), gguf.GGMLQuantizationType[kind]).any()
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize_k(x[:, :100], kind)


def _reference_qkx2(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """llama.cpp's make_qkx2_quants (ggml-quants.c), one group, written as the C is, loop for loop."""
    low, high = min(float(x.min()), 0.0), float(x.max())
    sum_w, sum_x = float(w.sum()), float((w * x).sum())
    levels = np.clip(np.rint(nmax / (high - low) * (x - low)), 0, nmax)
    scale = (high - low) / nmax
    best = float((w * (scale * levels + low - x) ** 2).sum())
    for step in range(nstep + 1):
        trial = np.clip(np.rint((rmin + rdelta * step + nmax) / (high - low) * (x - low)), 0, nmax)
        sl, sl2, sxl = float((w * trial).sum()), float((w * trial * trial).sum()), float((w * trial * x).sum())
        det = sum_w * sl2 - sl * sl
        if det > 0:
            this_scale, this_min = (sum_w * sxl - sum_x * sl) / det, (sl2 * sum_x - sl * sxl) / det
            if this_min > 0:
                this_scale, this_min = sxl / sl2, 0.0
            error = float((w * (this_scale * trial + this_min - x) ** 2).sum())
            if error < best:
                levels, best, scale, low = trial, error, this_scale, this_min
    return scale, -low, levels


def test_the_scale_search_is_llama_cpps() -> None:
    x = np.random.default_rng(1).standard_normal((100, 32)).astype(np.float32)
    w = np.sqrt((x * x).mean(-1, keepdims=True)) + np.abs(x)
    scales, mins, levels = _make_qkx2(x, w, 15, -1.0, 0.1, 20)
    for i in range(len(x)):
        scale, the_min, ref_levels = _reference_qkx2(x[i].astype(np.float64), w[i].astype(np.float64), 15, -1.0, 0.1, 20)
        assert scales[i] == pytest.approx(scale, rel=1e-4) and mins[i] == pytest.approx(the_min, rel=1e-4, abs=1e-6)
        assert (levels[i] == ref_levels).all()


def test_each_tensor_gets_llama_quantizes_type() -> None:
    assert tensor_type("output.weight", 512, "q4_k_m", 8, tied=False) == "Q6_K"
    assert tensor_type("token_embd.weight", 512, "q4_k_m", 8, tied=False) == "Q4_K"
    assert tensor_type("token_embd.weight", 512, "q4_k_m", 8, tied=True) == "Q6_K"  # it is the output head too
    # use_more_bits over 8 layers picks 0, 3, 6 and 7
    picked = [layer for layer in range(8) if tensor_type(f"blk.{layer}.attn_v.weight", 512, "q5_k_m", 8, False) == "Q6_K"]
    assert picked == [0, 3, 6, 7]
    assert tensor_type("blk.3.ffn_down.weight", 512, "q4_k_m", 8, False) == "Q6_K"
    assert tensor_type("blk.3.attn_q.weight", 512, "q4_k_m", 8, False) == "Q4_K"
    assert tensor_type("blk.1.attn_q.weight", 512, "q6_k", 8, False) == "Q6_K"
    # rows not a multiple of 256 (SmolLM2's 576): llama.cpp's fallbacks, then F16 below 32
    assert [tensor_type("blk.1.attn_q.weight", 576, o, 8, False) for o in ("q4_k_m", "q5_k_m", "q6_k")] == [
        "Q5_0", "Q5_1", "Q8_0"]
    assert tensor_type("output.weight", 576, "q4_k_m", 8, False) == "Q8_0"
    assert tensor_type("blk.1.attn_q.weight", 100, "q4_k_m", 8, False) == "F16"
    assert tensor_type("blk.1.attn_q.weight", 100, "q8_0", 8, False) == "F16"


def test_k_quant_exports_load_in_transformers(tmp_path: Path) -> None:
    """A model whose rows are 256 wide, so the K-quants themselves are used; fewer bits, larger gap."""
    folder = save_tiny("llama", tmp_path / "m", vocab_size=300, hidden=256, heads=4, kv_heads=2, intermediate=256,
                       layers=4)
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    gaps, mixes = {}, {}
    for outtype in ("q6_k", "q5_k_m", "q4_k_m"):
        result = export_gguf(folder, tmp_path / f"m-{outtype}.gguf", outtype)
        gaps[outtype] = result.max_abs_diff
        assert gaps[outtype] <= TOLERANCE[outtype]
        mixes[outtype] = dict(gguf_weight_types(result.path))
    assert 0 < gaps["q6_k"] < gaps["q5_k_m"] < gaps["q4_k_m"]
    # read by plain transformers, outside tunesmith's loader, the file gives the same logits
    assert logits_gap(reference, tokenizer, tmp_path / "m-q4_k_m.gguf") == pytest.approx(gaps["q4_k_m"], rel=1e-4)
    # 4 layers x 7 matrices + embedding + head; attn_v and ffn_down of layers 2 and 3, and the head, get Q6_K
    assert mixes == {"q6_k": {"Q6_K": 30}, "q5_k_m": {"Q5_K": 25, "Q6_K": 5}, "q4_k_m": {"Q4_K": 25, "Q6_K": 5}}
    sizes = [(tmp_path / f"m-{o}.gguf").stat().st_size for o in ("q6_k", "q5_k_m", "q4_k_m")]
    assert sizes == sorted(sizes, reverse=True)


def test_unknown_outtype_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="q4_k_m, q5_k_m, q6_k"):
        export_gguf(tmp_path, tmp_path / "x.gguf", "q4_k_s")


@pytest.mark.slow
def test_smollm2_q4_k_m(smollm2: Path, tmp_path: Path) -> None:
    """The real chat model at the type Ollama users pull most: within tolerance, llama-quantize's mix for its
    576-wide rows, a quarter of the f16 size or less, and a Modelfile with its ChatML template and system prompt.
    `smollm2` is the session's one conversion of the GGUF fixture (conftest), not a second one here."""
    result = export_gguf(smollm2, tmp_path / "smollm2-q4_k_m.gguf", "q4_k_m")
    assert 0 < result.max_abs_diff <= TOLERANCE["q4_k_m"]  # 7.73 measured
    # 30 layers, 14 of them picked by use_more_bits: ffn_down is 1536 wide (Q4_K, Q6_K in those), every other
    # matrix 576 (Q5_0; attn_v Q6_K falls back to Q8_0 in those), the tied embedding Q8_0 (the head's type)
    assert dict(gguf_weight_types(result.path)) == {"Q5_0": 166, "Q8_0": 15, "Q4_K": 16, "Q6_K": 14}
    assert result.path.stat().st_size < 0.4 * 135e6 * 2
    modelfile = result.modelfile.read_text()
    assert "<|im_start|>{{ .Role }}" in modelfile and 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile
