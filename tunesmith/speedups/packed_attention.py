"""Attention over packed rows, one sample at a time: the masked blocks between samples are never computed.

A packed row of 512 tokens holding samples of 150, 200 and 162 tokens needs causal attention inside each
sample only. Under transformers' sdpa path the row gets a 512 x 512 block-diagonal mask (built from the
restarts of `position_ids`), which also bars sdpa's causal shortcut, so every one of the 512^2 query-key
pairs is computed and most are thrown away. Here each sample runs `scaled_dot_product_attention(...,
is_causal=True)` on its own slice: sum(n^2)/2 pairs instead of 512^2, and no mask to build or keep.

The segments are transformers' own: a new sample starts wherever `position_ids` does not step by one
(`masking_utils.find_packed_sequence_indices`), so the result is the masked sdpa's to float rounding. Anything
else (a padding mask, a key/value cache, attention dropout, no `position_ids`) goes to transformers' sdpa
unchanged. Used for training on CPU where the model would run sdpa (`use_per_sample_attention`); on a GPU the
flash kernels' varlen path does the same job.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "sdpa_per_sample"


def segment_bounds(positions: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each sample in one row: a sample starts at 0 and wherever the position does not step by 1."""
    steps = torch.diff(positions) != 1
    starts = [0, *(steps.nonzero().flatten() + 1).tolist()]
    return list(zip(starts, [*starts[1:], positions.numel()]))


def per_sample_mask(*, batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                    attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No mask where the attention needs none (no padding mask, no cache); else the mask sdpa would get."""
    if attention_mask is None and q_offset == 0 and kv_offset == 0 and q_length == kv_length:
        return None
    return sdpa_mask(batch_size=batch_size, q_length=q_length, kv_length=kv_length, q_offset=q_offset,
                     kv_offset=kv_offset, attention_mask=attention_mask, **kwargs)


def per_sample_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                         **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention per sample of each row of (batch, heads, length, head_dim) inputs; output (batch, length,
    heads, head_dim), as transformers' sdpa returns it."""
    positions = kwargs.get("position_ids")
    if (attention_mask is not None or positions is None or dropout or kwargs.get("is_causal") is False
            or query.shape[2] != key.shape[2]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    rows = []
    # split, not indexing: the backward of split is one concatenation, that of a slice zero-fills the whole input
    for q, k, v, row_positions in zip(query.split(1), key.split(1), value.split(1),
                                      positions.expand(query.shape[0], -1)):
        sizes = [end - start for start, end in segment_bounds(row_positions)]
        rows.append(torch.cat([F.scaled_dot_product_attention(*sample, is_causal=True, scale=scaling, enable_gqa=gqa)
                               for sample in zip(q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2))], dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, per_sample_attention)
AttentionMaskInterface.register(NAME, per_sample_mask)


def use_per_sample_attention(model: torch.nn.Module, device: torch.device) -> bool:
    """Switch a model that attends with sdpa on CPU to per-sample attention; True when it did."""
    config = getattr(model, "config", None)
    if device.type != "cpu" or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(NAME)
    return True
