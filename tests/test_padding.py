"""Left padding of ragged token rows: the layout generation, serving, rollouts and choice scoring share."""

from __future__ import annotations

import pytest
import torch

from tunesmith.models.padding import left_pad, token_positions

PAD = 7


def _expected(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Built element by element, independently of the helper's slicing."""
    width = max(len(r) for r in rows)
    ids = [[pad] * (width - len(r)) + r for r in rows]
    mask = [[0] * (width - len(r)) + [1] * len(r) for r in rows]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


@pytest.mark.parametrize("rows", [
    [[1, 2, 3], [4], [5, 6]],
    [[9, 8], [7, 6], [5, 4]],
    [[3, 1, 4, 1, 5]],
    [[2], [], [1, 2, 3, 4]],
])
def test_left_pad_right_aligns_every_row_behind_pad(rows: list[list[int]]) -> None:
    ids, mask = left_pad(rows, PAD)
    want_ids, want_mask = _expected(rows, PAD)
    assert ids.dtype == mask.dtype == torch.long
    assert torch.equal(ids, want_ids)
    assert torch.equal(mask, want_mask)


def test_left_pad_puts_the_tensors_on_the_device_asked() -> None:
    ids, mask = left_pad([[1], [2, 3]], 0, device="meta")
    assert ids.device.type == mask.device.type == "meta"


def test_token_positions_count_real_tokens_only() -> None:
    _, mask = left_pad([[5, 6, 7], [8]], 0)
    assert token_positions(mask).tolist() == [[0, 1, 2], [0, 0, 0]]
    assert token_positions(mask, start=4).tolist() == [[4, 5, 6], [4, 4, 4]]
