"""The data health report: what will actually be trained, and what looks wrong, before any GPU time is spent."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text as RichText

from tunesmith.data.image_stats import ImageStats, image_label, image_stats, safe_size
from tunesmith.data.images import IMAGE_PLACEHOLDER
from tunesmith.data.prepared import PreparedData, sample_lengths, trained_counts, truncated_count
from tunesmith.data.types import IGNORE_INDEX, Sample, example_images

HISTOGRAM_BINS = 8
HISTOGRAM_WIDTH = 40


@dataclass
class DataReport:
    format: str
    detected: bool
    rows: int
    train_examples: int
    eval_examples: int
    bad_rows: list[str]
    truncated: int
    no_trained: int
    tokens_total: int
    tokens_trained: int
    lengths: list[int]
    duplicates: int
    overlap: int
    replay: dict[str, Any] | None
    unusable: int = 0
    images: ImageStats | None = None
    """Pictures per row, their sizes and image tokens per row; None for a dataset without pictures."""

    def percentile(self, q: float) -> int:
        if not self.lengths:
            return 0
        ordered = sorted(self.lengths)
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def build_report(data: PreparedData, tokenizer: Any = None) -> DataReport:
    """Counted with numpy over the store's arrays (or the in-memory samples): no sample is materialised. The
    tokenizer (a processor for a vision-language model) says how many tokens an image costs."""
    lengths = np.concatenate([sample_lengths(data.train), sample_lengths(data.eval)])
    trained = np.concatenate([trained_counts(data.train), trained_counts(data.eval)])
    return DataReport(
        format=data.format, detected=data.detected, rows=data.rows, train_examples=len(data.train_examples),
        eval_examples=len(data.eval_examples), bad_rows=data.bad_rows,
        truncated=truncated_count(data.train) + truncated_count(data.eval), no_trained=int((trained == 0).sum()),
        tokens_total=int(lengths.sum()), tokens_trained=int(trained.sum()),
        lengths=lengths.tolist(), duplicates=data.duplicates, overlap=data.overlap,
        replay=data.replay.as_dict() if data.replay else None, unusable=getattr(data, "unusable", 0),
        images=image_stats(itertools.chain(data.train_examples, data.eval_examples), tokenizer),
    )


def print_report(report: DataReport, example: Sample | None, tokenizer: Any, console: Console,
                 images: Sequence[str] = ()) -> None:
    """The report as a table, the bad rows, the length histogram and one example (with `images`, its pictures)."""
    how = "detected" if report.detected else "as given"
    table = Table(title="data health", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("format", f"{report.format} ({how})")
    table.add_row("rows", f"{report.rows:,} -> train {report.train_examples:,} / eval {report.eval_examples:,}")
    table.add_row("bad rows skipped", _flag(len(report.bad_rows)))
    table.add_row("truncated samples", _flag(report.truncated))
    table.add_row("samples with no trained token", _flag(report.no_trained))
    if report.format in ("preference", "kto"):
        table.add_row("unusable pairs dropped", _flag(report.unusable))
    share = report.tokens_trained / max(report.tokens_total, 1)
    table.add_row("tokens trained / total", f"{report.tokens_trained:,} / {report.tokens_total:,} ({share:.1%})")
    table.add_row("length p50 / p90 / max", f"{report.percentile(0.5)} / {report.percentile(0.9)} / {max(report.lengths, default=0)}")
    table.add_row("exact duplicates in train", _flag(report.duplicates))
    table.add_row("eval rows also in train", _flag(report.overlap))
    if report.images is not None:
        _image_rows(table, report.images)
    if report.replay:
        r = report.replay
        table.add_row("replay", f"{r['replay_samples']} samples, {r['share']:.1%} of trained tokens (asked {r['ratio']:.0%})")
    console.print(table)
    for message in report.bad_rows[:5]:
        console.print(f"  [yellow]skipped[/] {message}", highlight=False)
    if len(report.bad_rows) > 5:
        console.print(f"  ... and {len(report.bad_rows) - 5} more")
    console.print(histogram(report.lengths))
    if example is not None:
        console.print("[bold]example[/] ([green]trained[/], [dim]not trained[/]):")
        console.print(render_example(example, tokenizer, images))


def _flag(count: int) -> str:
    return f"[yellow]{count:,}[/]" if count else "0"


def histogram(lengths: list[int]) -> str:
    """A text histogram of sample lengths in tokens."""
    if not lengths:
        return "(no samples)"
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // HISTOGRAM_BINS))
    counts = [0] * HISTOGRAM_BINS
    for n in lengths:
        counts[min((n - low) // width, HISTOGRAM_BINS - 1)] += 1
    peak = max(counts)
    lines = ["[bold]length histogram[/] (tokens)"]
    for i, count in enumerate(counts):
        start = low + i * width
        bar = "█" * max(1 if count else 0, round(HISTOGRAM_WIDTH * count / peak))
        lines.append(f"  {start:>6}-{start + width - 1:<6} {bar} {count}")
    return "\n".join(lines)


def report_example(data: PreparedData) -> tuple[Sample | None, tuple[str, ...]]:
    """The sample the report shows (the first with a trained token) and its example's pictures. Chat and
    preference examples become one sample each, in order, so the sample's position finds its example."""
    if not data.train:
        return None, ()
    index = next((i for i, s in enumerate(data.train) if s.trained_tokens), 0)
    paired = len(data.train) == len(data.train_examples)
    example = data.train_examples[index] if paired else None
    return data.train[index], example_images(example) if example is not None else ()


def _image_rows(table: Table, stats: ImageStats) -> None:
    low, mid, high = stats.per_row
    table.add_row("images per row min / median / max",
                  f"{low} / {mid} / {high} ({stats.rows_with_images:,} of {stats.rows:,} rows have images)")
    if stats.sizes is not None:
        shown = " / ".join(f"{w}x{h}" for w, h in stats.sizes)
        table.add_row("image sizes min / median / max", f"{shown} (of {stats.sized:,} images read)")
    if stats.unreadable:
        table.add_row("images unreadable now", _flag(stats.unreadable))
    tokens = stats.tokens_per_row
    table.add_row("image tokens per row min / median / max",
                  " / ".join(map(str, tokens)) if tokens else "n/a (the tokenizer does not say; a text model)")


def render_example(sample: Sample, tokenizer: Any, images: Sequence[str] = (),
                   image_token: str | None = None) -> RichText:
    """The sample's text with trained tokens in green and the rest dimmed; each picture of `images` shows as a
    highlighted `[image 1: 224x224 red.png]` where it sits.

    Each run of tokens is cut from the decoded prefix rather than decoded alone, so word-initial spaces
    (SentencePiece) survive at the run boundaries. A picture sits at `image_token`: by default the processor's
    own (`tokenizer.image_token`, e.g. Qwen2-VL's `<|image_pad|>`) where the text holds it, else `<image>`. A
    processor may expand one picture into many: when the text holds more image tokens than there are pictures,
    each unbroken run of them is one picture.
    """
    segments = []
    ids, labels = sample.input_ids, sample.labels
    start, shown = 0, ""
    for end in range(1, len(ids) + 1):
        if end == len(ids) or (labels[end] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            prefix = tokenizer.decode(ids[:end], skip_special_tokens=False)
            segments.append((prefix[len(shown):], "bold green" if labels[start] != IGNORE_INDEX else "dim"))
            start, shown = end, prefix
    text = RichText()
    if not images:
        for piece, style in segments:
            text.append(piece, style=style)
        return text
    own = image_token or getattr(tokenizer, "image_token", None)
    if not isinstance(own, str) or not own or not any(own in piece for piece, _ in segments):
        own = IMAGE_PLACEHOLDER
    image_token = own
    one_each = sum(piece.count(image_token) for piece, _ in segments) == len(images)
    pattern = re.compile(re.escape(image_token) if one_each else f"(?:{re.escape(image_token)})+")
    number = 0
    for piece, style in segments:
        at = 0
        for found in pattern.finditer(piece):
            text.append(piece[at:found.start()], style=style)
            ref = images[number] if number < len(images) else None
            label = image_label(ref, safe_size(ref)) if ref is not None else "not in the row's images"
            number += 1
            text.append(f"[image {number}: {label}]", style="bold magenta reverse")
            at = found.end()
        text.append(piece[at:], style=style)
    return text
