"""Left padding of ragged token rows, the layout a decoder-only model reads a batch of prompts in.

Generation, serving, rollouts and choice scoring all need every row's last real token in the last column,
so the next token of every row is read (or sampled) at the same position. One helper keeps the layout, the
mask and the positions the same for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, *, device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (N, longest) int64: each row right-aligned, `pad_id` before it.

    The mask is 1 on real tokens, 0 on padding. `device` is where both tensors end up (built on the CPU).
    """
    width = max(len(row) for row in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, row in enumerate(sequences):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    return ids, mask


def token_positions(attention_mask: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Position ids counting real tokens only, from `start`: padding before a row does not shift it.

    `generate` numbers a left-padded row the same way, so a forward over the padded batch sees the positions
    each row would have alone. Padding gets position `start` (it is masked out anyway).
    """
    return start + (attention_mask.cumsum(-1) - 1).clamp(min=0)
