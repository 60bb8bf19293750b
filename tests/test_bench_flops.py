"""The model-FLOP count behind the throughput bench's MFU: weights counted right, work credited right."""

from __future__ import annotations

from pathlib import Path

from bench.flops import model_shape
from tunesmith.testing.tiny import save_tiny


def test_model_shape_counts_a_llama_by_hand(tmp_path: Path) -> None:
    folder = save_tiny("llama", tmp_path / "m", vocab_size=300, hidden=64, layers=2, heads=4, kv_heads=2,
                       intermediate=128)
    shape = model_shape(str(folder), rank=8)
    vocab = shape.head // 64
    kv = 64 // 4 * 2  # 2 key/value heads of width 16
    per_layer = 64 * 64 * 2 + 64 * kv * 2 + 3 * 64 * 128  # q, o; k, v; gate, up, down
    assert shape.body_linear == 2 * per_layer
    assert shape.lora == 2 * 8 * ((64 + 64) * 2 + (64 + kv) * 2 + (64 + 128) * 2 + (128 + 64))
    assert shape.layers == 2 and shape.attention_width == 64
    assert shape.total == shape.body_linear + 2 * vocab * 64 + (2 * 2 + 1) * 64  # untied embeddings, norms


def test_flops_credit_trained_head_positions_and_per_sample_attention(tmp_path: Path) -> None:
    folder = save_tiny("llama", tmp_path / "m", vocab_size=300, hidden=64, layers=2, heads=4, kv_heads=4,
                       intermediate=128)
    shape = model_shape(str(folder), rank=8)
    # Two samples of 10 and 30 tokens, 25 of them trained.
    full = shape.flops("full", real_tokens=40, trained_tokens=25, squared_lengths=10**2 + 30**2)
    assert full == 6 * (shape.body_linear * 40 + shape.head * 25) + 6 * 2 * 64 * 1000
    lora = shape.flops("lora", real_tokens=40, trained_tokens=25, squared_lengths=1000)
    assert lora == 4 * (shape.body_linear * 40 + shape.head * 25) + 6 * shape.lora * 40 + 6 * 2 * 64 * 1000
    # Packing two samples into one 40-token row does not add attention work: it is per sample.
    assert shape.flops("full", 40, 25, 1000) < shape.flops("full", 40, 25, 40**2)
