"""The pictures in a dataset, summarised for the data health report: how many per row, how large, and how many
tokens they will cost the model.

Sizes come from each image's header (no pixel is decoded) for up to `IMAGE_SAMPLE` images, so the report of a
large image corpus stays quick; the rows were already checked whole when they were parsed. Image tokens per
row are the processor's to say (`image_token_counts`); a text tokenizer says nothing, and the report shows n/a.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.images import ImageError, image_size
from tunesmith.data.types import Conversation, Example, Preference

IMAGE_SAMPLE = 2000
"""At most this many images have their header read for the size and token figures."""

Size = tuple[int, int]
"""(width, height) in pixels, as Pillow reports it."""


@dataclass(frozen=True)
class ImageStats:
    """The report's image figures; `sizes` ordered by area (smallest, median, largest), `tokens_per_row` None when
    the tokenizer cannot say how many tokens an image costs."""

    rows: int
    rows_with_images: int
    per_row: tuple[int, int, int]
    sizes: tuple[Size, Size, Size] | None
    sized: int
    unreadable: int
    tokens_per_row: tuple[int, int, int] | None


def image_stats(examples: Iterable[Example], tokenizer: Any = None, limit: int = IMAGE_SAMPLE) -> ImageStats | None:
    """The figures for the chat or preference examples' pictures; None when no example has a picture.

    One pass over `examples` (the store's, read one at a time); a dataset whose first example is neither a chat
    nor a pair (raw text, prompts, KTO answers) has no pictures and is not read further."""
    stream = iter(examples)
    first = next(stream, None)
    if not isinstance(first, (Conversation, Preference)):
        return None
    counts: list[int] = []
    sizes: dict[str, Size | None] = {}
    row_tokens: list[int] = []
    for ex in itertools.chain((first,), stream):
        if not isinstance(ex, (Conversation, Preference)):
            continue
        counts.append(len(ex.images))
        if not ex.images or len(sizes) >= limit:
            continue
        found = [_size(ref, sizes) for ref in ex.images]
        known = [size for size in found if size is not None]
        tokens = image_token_counts(tokenizer, known) if len(known) == len(found) else None
        if tokens is not None:
            row_tokens.append(sum(tokens))
    if not any(counts):
        return None
    readable = sorted((s for s in sizes.values() if s is not None), key=lambda s: (s[0] * s[1], s))
    return ImageStats(
        rows=len(counts), rows_with_images=sum(1 for n in counts if n), per_row=_spread(counts),
        sizes=(readable[0], readable[len(readable) // 2], readable[-1]) if readable else None,
        sized=len(readable), unreadable=len(sizes) - len(readable),
        tokens_per_row=_spread(row_tokens) if row_tokens else None,
    )


def image_token_counts(tokenizer: Any, sizes: Sequence[Size]) -> list[int] | None:
    """Tokens each image of these sizes becomes in the model's input, or None when the tokenizer cannot say.

    A Hugging Face processor says it through `_get_num_multimodal_tokens` (the count vLLM plans its memory by;
    it takes (height, width)); a text tokenizer has no such method, as it takes no images."""
    count = getattr(tokenizer, "_get_num_multimodal_tokens", None)
    if count is None or not sizes:
        return None
    try:
        data = count(image_sizes=[[height, width] for width, height in sizes])
    except (AttributeError, KeyError, TypeError, ValueError):  # a processor whose kwargs this cannot fill
        return None
    tokens = getattr(data, "num_image_tokens", None)
    return [int(n) for n in tokens] if tokens is not None and len(tokens) == len(sizes) else None


def image_label(ref: str, size: Size | None) -> str:
    """How the report names a picture: its size and file name (a data: URI has none)."""
    name = "data: URI" if ref[:5].lower() == "data:" else Path(ref).name
    shown = f"{size[0]}x{size[1]}" if size is not None else "unreadable"
    return f"{shown} {name}"


def safe_size(ref: str) -> Size | None:
    """The picture's size, or None when it can no longer be read (the report shows it, training will fail on it)."""
    try:
        return image_size(ref)
    except ImageError:
        return None


def _size(ref: str, seen: dict[str, Size | None]) -> Size | None:
    if ref not in seen:
        seen[ref] = safe_size(ref)
    return seen[ref]


def _spread(values: Sequence[int]) -> tuple[int, int, int]:
    ordered = sorted(values)
    return ordered[0], ordered[len(ordered) // 2], ordered[-1]
