"""Samples -> rows of the model's context length, and rows -> batches of tensors.

Packing lays several samples end to end in one row, so no compute is spent on padding. Isolation between
the samples of a row comes from the model, not from an attention mask, and only when it is run as
`model(input_ids=..., position_ids=..., labels=..., use_cache=False)` with NO `attention_mask`:

* `position_ids` restart at 0 for every sample; transformers (5.x, sdpa/eager/flex) reads each restart as
  a sequence boundary and builds a block-diagonal causal mask from it;
* it does that only when no attention mask is passed and no cache exists. With `use_cache` left at its
  default (True in most configs) a cache is created, the boundary detection is skipped and every sample
  attends to the ones before it in the row (measured: max logit error 0.62 instead of 2e-7). The
  isolation test in tests/test_packing.py pins both behaviours.

Flash attention (flash_attention_2/3) finds the boundaries differently. transformers 5.x turns the packed-mask
machinery off for it (`masking_utils.flash_attention_mask` returns None without an attention mask), and
`modeling_flash_attention_utils._flash_attention_forward` calls the varlen kernel, with `cu_seqlens` taken
from the positions where `position_ids` equals its minimum (`prepare_fa_kwargs_from_position_ids`), only when
`_is_packed_sequence` holds, and that requires a batch of ONE row. A micro-batch of several packed rows falls
through to the plain causal kernel, and every sample attends to the samples before it in its row (measured
on CPU through transformers' own dispatch with a reference kernel: max logit error 0.59; tests/test_kernels.py).
So for flash attention `collate_flat` lays the whole micro-batch end to end in one row, as TRL's padding-free
collator does: no padding at all, and the single row is exactly the case transformers handles.

The first token of every sample gets label IGNORE_INDEX: after the model shifts labels, that position is
the one the previous sample's last token would predict. A sample alone never has a target at its first
token either, so a packed row's loss equals the token-weighted mean of its samples' own losses.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import torch

from tunesmith.data.types import IGNORE_INDEX, PackedRow, Sample
from tunesmith.errors import UserError


def pack(samples: Sequence[Sample], max_len: int) -> list[PackedRow]:
    """Best-fit decreasing: longest samples first, each into the fullest row that still has room.

    Deterministic: ties in length keep the input order. Rows hold their samples in placement order.
    Empty samples are dropped.
    """
    rows = pack_indices(np.array([len(s) for s in samples], np.int64), max_len)
    return [join([samples[i] for i in row]) for row in rows]


def pack_indices(lengths: np.ndarray, max_len: int) -> list[list[int]]:
    """`pack` on sample lengths alone: rows as lists of positions in `lengths`, so a plan of a whole corpus
    holds integers, never the samples (the store reads a sample when its row is collated)."""
    if len(lengths) and int(lengths.max()) > max_len:
        raise UserError(f"a sample of {int(lengths.max())} tokens exceeds the packing length {max_len}; "
                        "truncate it first")
    order = np.argsort(-lengths, kind="stable")  # longest first; ties keep the input order
    full = int(np.count_nonzero(lengths == max_len))  # they come first and each fills a row of its own: a
    rows: list[list[int]] = [[i] for i in order[:full].tolist()]  # corpus cut into blocks is all of them
    free: list[tuple[int, int]] = []  # (room left, row index), ascending: the first that fits is the best fit
    for i, length in zip(order[full:].tolist(), lengths[order[full:]].tolist()):
        if not length:
            continue
        at = bisect.bisect_left(free, (length, -1))
        if at == len(free):
            room, row = max_len, len(rows)
            rows.append([])
        else:
            room, row = free.pop(at)
        rows[row].append(i)
        if room - length > 0:
            bisect.insort(free, (room - length, row))
    return rows


def collate_packed(rows: list[PackedRow], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad rows to the longest: `input_ids`, `labels`, `position_ids` of shape (batch, length).

    No `attention_mask`, on purpose (see the module docstring). Padding gets labels IGNORE_INDEX and its own
    positions from 0, so the model treats it as one more sample; it comes last, so causal attention keeps it
    from touching real tokens.
    """
    width = max(len(row.input_ids) for row in rows)
    pads = [width - len(row.input_ids) for row in rows]
    return {
        "input_ids": torch.tensor([row.input_ids + [pad_id] * n for row, n in zip(rows, pads)]),
        "labels": torch.tensor([row.labels + [IGNORE_INDEX] * n for row, n in zip(rows, pads)]),
        "position_ids": torch.tensor([row.position_ids + list(range(n)) for row, n in zip(rows, pads)]),
    }


def collate_flat(rows: list[PackedRow]) -> dict[str, torch.Tensor]:
    """All rows end to end in ONE row of shape (1, total tokens), no padding: the layout flash attention needs.

    Same keys and per-token values as `collate_packed`, so the loss and the trained-token count are the
    same; only the batch dimension changes (see the module docstring for why).
    """
    return {
        "input_ids": torch.tensor([[i for row in rows for i in row.input_ids]]),
        "labels": torch.tensor([[i for row in rows for i in row.labels]]),
        "position_ids": torch.tensor([[i for row in rows for i in row.position_ids]]),
    }


def collate_padded(samples: list[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """One sample per row, right-padded: `input_ids`, `labels`, `attention_mask` of shape (batch, length)."""
    width = max(len(s) for s in samples)
    pads = [width - len(s) for s in samples]
    return {
        "input_ids": torch.tensor([s.input_ids + [pad_id] * n for s, n in zip(samples, pads)]),
        "labels": torch.tensor([s.labels + [IGNORE_INDEX] * n for s, n in zip(samples, pads)]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * n for s, n in zip(samples, pads)]),
    }


def join(samples: list[Sample]) -> PackedRow:
    """Samples end to end in one row, positions restarting and the first label of each ignored."""
    row = PackedRow(input_ids=[], labels=[], position_ids=[], lengths=[])
    for sample in samples:
        row.input_ids.extend(sample.input_ids)
        row.labels.extend([IGNORE_INDEX, *sample.labels[1:]])
        row.position_ids.extend(range(len(sample)))
        row.lengths.append(len(sample))
    return row
