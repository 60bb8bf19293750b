"""The data health report: what will actually be trained, and what looks wrong, before any GPU time is spent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text as RichText

from tunesmith.data.prepared import PreparedData, sample_lengths, trained_counts, truncated_count
from tunesmith.data.types import IGNORE_INDEX, Sample

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

    def percentile(self, q: float) -> int:
        if not self.lengths:
            return 0
        ordered = sorted(self.lengths)
        return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def build_report(data: PreparedData) -> DataReport:
    """Counted with numpy over the store's arrays (or the in-memory samples): no sample is materialised."""
    lengths = np.concatenate([sample_lengths(data.train), sample_lengths(data.eval)])
    trained = np.concatenate([trained_counts(data.train), trained_counts(data.eval)])
    return DataReport(
        format=data.format, detected=data.detected, rows=data.rows, train_examples=len(data.train_examples),
        eval_examples=len(data.eval_examples), bad_rows=data.bad_rows,
        truncated=truncated_count(data.train) + truncated_count(data.eval), no_trained=int((trained == 0).sum()),
        tokens_total=int(lengths.sum()), tokens_trained=int(trained.sum()),
        lengths=lengths.tolist(), duplicates=data.duplicates, overlap=data.overlap,
        replay=data.replay.as_dict() if data.replay else None, unusable=getattr(data, "unusable", 0),
    )


def print_report(report: DataReport, example: Sample | None, tokenizer: Any, console: Console) -> None:
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
        console.print(render_example(example, tokenizer))


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


def render_example(sample: Sample, tokenizer: Any) -> RichText:
    """The sample's text with trained tokens in green and the rest dimmed.

    Each run of tokens is cut from the decoded prefix rather than decoded alone, so word-initial spaces
    (SentencePiece) survive at the run boundaries.
    """
    text = RichText()
    ids, labels = sample.input_ids, sample.labels
    start, shown = 0, ""
    for end in range(1, len(ids) + 1):
        if end == len(ids) or (labels[end] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            prefix = tokenizer.decode(ids[:end], skip_special_tokens=False)
            text.append(prefix[len(shown):], style="bold green" if labels[start] != IGNORE_INDEX else "dim")
            start, shown = end, prefix
    return text
