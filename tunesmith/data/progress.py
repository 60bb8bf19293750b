"""A progress bar for data preparation: megabytes of text tokenized, MB/s and the time left.

Shown on stderr (stdout stays the report's) when the text is large enough for a wait to be noticed
(`SHOW_MIN_CHARS`); the rate is also logged at the end, so a log without a terminal still says how fast.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from tunesmith.data.parallel import example_chars
from tunesmith.data.types import Example

logger = logging.getLogger(__name__)

SHOW_MIN_CHARS = 4 << 20
"""Text below this size (4 MiB) is tokenized in seconds: no bar."""


def text_size(*splits: Sequence[Example]) -> int:
    """Characters of text in the examples: the bar's total."""
    return sum(example_chars(ex) for split in splits for ex in split)


class PrepProgress:
    """Counts the characters of text tokenized (a character of text is about a byte of the file)."""

    def __init__(self, total: int, workers: int) -> None:
        self.total = total
        self.workers = workers
        self.done = 0
        self.started = time.perf_counter()
        self.bar: Progress | None = None
        if self.total >= SHOW_MIN_CHARS:
            self.bar = Progress(TextColumn("tokenizing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("tokenizing", total=self.total)

    def __enter__(self) -> PrepProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def advance(self, chars: int) -> None:
        self.done += chars
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()
        seconds = time.perf_counter() - self.started
        if kind is None and self.total >= SHOW_MIN_CHARS:
            logger.info("tokenized %.1f MB of text in %.1f s (%.2f MB/s, %d processes)", self.done / 1e6, seconds,
                        self.done / 1e6 / max(seconds, 1e-9), self.workers)
