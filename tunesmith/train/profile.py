"""`tunesmith train --profile`: where step time goes (data, forward, backward, optimizer).

Wall-clock per phase, summed over the run; on CUDA each phase boundary synchronises so asynchronous
kernels are charged to the phase that launched them (which slows the run slightly: profile, then turn
it off).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from rich.console import Console
from rich.table import Table

PHASES = ("data", "forward", "backward", "optimizer")


class StepProfiler:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        _sync()
        started = time.perf_counter()
        try:
            yield
        finally:
            _sync()
            self.seconds[name] += time.perf_counter() - started

    def print(self, console: Console) -> None:
        total = sum(self.seconds.values())
        if not self.enabled or total == 0:
            return
        table = Table(title="where step time went", title_justify="left")
        for column in ("phase", "seconds", "share"):
            table.add_column(column, justify="right" if column != "phase" else "left")
        for name in PHASES:
            table.add_row(name, f"{self.seconds[name]:.2f}", f"{self.seconds[name] / total:.1%}")
        console.print(table)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
