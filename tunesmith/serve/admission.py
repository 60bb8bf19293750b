"""How many requests may wait for the engine: sized from the throughput the engine has measured, not a
fixed count.

A fixed queue is either too short for a fast model (a burst of 200 small requests that the engine would
finish in seconds gets 503s) or too long for a slow one (requests wait minutes and time out in the client).
So, by default, a request is admitted while the queue ahead of it is work for at most `max_wait_s` at the
speed the engine ran its recent batches (an exponential moving average, seeded at start by one timed full
batch: Engine.measure), and always while fewer than `floor` wait. Work is counted in budgeted tokens (each
choice's max_tokens): the unit of the queue and of the speed are the same, so requests that stop early make
batches faster and the measured speed higher, and long answers are not mistaken for short ones. `cap`, when given (`--queue-size`), is a fixed
bound instead. A refusal says how long the queue needs: the 503's `Retry-After`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HARD_CAP = 4096
"""No more waiting requests than this, whatever the measured speed: bounds the memory they hold."""
SMOOTHING = 0.3
"""Weight of the newest batch in the moving average of work per second."""
MAX_RETRY_AFTER_S = 60


@dataclass
class Admission:
    """The queue's admission rule; `record` every finished batch, ask `admits` before queueing a request."""

    floor: int
    max_wait_s: float = 30.0
    max_batch: int = 16
    cap: int | None = None
    work_per_s: float | None = None
    """Budgeted tokens per second; None before any batch was timed."""

    def record(self, work: int, seconds: float) -> None:
        """A batch of `work` budgeted tokens finished in `seconds`: update the measured throughput."""
        if work < 1 or seconds <= 0:
            return
        rate = work / seconds
        self.work_per_s = rate if self.work_per_s is None else SMOOTHING * rate + (1 - SMOOTHING) * self.work_per_s

    def wait_s(self, queued_work: int) -> float | None:
        """Seconds the engine needs for `queued_work` at the measured rate; None before any measurement."""
        return None if self.work_per_s is None else queued_work / self.work_per_s

    def admits(self, queued_jobs: int, queued_work: int) -> bool:
        """Whether one more request may wait behind `queued_jobs` requests holding `queued_work` tokens."""
        if self.cap is not None:
            return queued_jobs < self.cap
        if queued_jobs >= HARD_CAP:
            return False
        wait = self.wait_s(queued_work)
        return queued_jobs < self.floor or (wait is not None and wait < self.max_wait_s)

    def retry_after_s(self, queued_jobs: int, queued_work: int) -> int:
        """Whole seconds (1 to 60) until the queue should admit again: the work beyond `max_wait_s` (with a
        fixed `cap`, one waiting request's share), but no later than the next full batch ends, when the
        measured speed is updated (work counted at its budget is often done sooner)."""
        wait = self.wait_s(queued_work)
        if wait is None:
            return 1
        per_job = wait / max(1, queued_jobs)
        excess = per_job if self.cap is not None else wait - self.max_wait_s
        return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(min(excess, per_job * self.max_batch)))))
