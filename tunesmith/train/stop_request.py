"""A stop request (Ctrl-C, the dashboard's Stop) that every rank of a several-process run agrees on.

With one process, Ctrl-C raises KeyboardInterrupt and the loop saves a checkpoint of the last whole step.
With several, each rank would take the signal at a different point (one in step 4, another already waiting
in step 5's collective), so one could save step-4 while another stops at step-3, or hang. Instead, while the
steps run, SIGINT only sets a flag; after every optimizer step the ranks take the maximum of their flags (one
small all-reduce) and, when any rank was asked to stop, all of them raise KeyboardInterrupt at the same step,
so the loop's save is the same collective on every rank. Repeated signals count as one (the launcher passes
on a signal the ranks may have had too).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import torch
from accelerate import Accelerator


class StopRequest:
    """This rank's flag, set by SIGINT while the loop's steps run."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.requested = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt on every rank when any rank was asked to stop (a collective: every rank
        calls it after each step); one process never raises here (Ctrl-C raised already)."""
        if self.accelerator.num_processes == 1:
            return
        flag = torch.tensor(float(self.requested), device=self.accelerator.device)
        if self.accelerator.reduce(flag, "max").item() > 0:
            raise KeyboardInterrupt


@contextmanager
def agreed_stop(accelerator: Accelerator) -> Iterator[StopRequest]:
    """Inside, SIGINT sets this rank's flag instead of raising (several processes); one process keeps
    KeyboardInterrupt as it is."""
    request = StopRequest(accelerator)
    if accelerator.num_processes == 1:
        yield request
        return
    previous = signal.signal(signal.SIGINT, request._handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
