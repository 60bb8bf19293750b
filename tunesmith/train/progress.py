"""The training progress bar: what runs now (training, or the held-out evaluation of the base before step 1),
step, loss, lr, tokens/s and an ETA, updated every step.

The ETA is the mean time of the steps this process ran (elapsed since its first step began, over the steps
done) times the steps left, counting down between updates. rich's own estimate averages over the last 30 s
only (`speed_estimate_period`), so when one step takes longer than that it never shows one ("-:--:--" for a
36-minute run on a slow CPU); ours appears after the first step whatever the step time.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

TRAIN = "train"
BASE_EVAL = "evaluating base (held-out)…"
T = TypeVar("T")


class StepEtaColumn(ProgressColumn):
    """Time left: seconds per step (the task's `step_seconds` field) x steps left, less the time since the
    last update (`updated`, monotonic); '-:--:--' until a step has finished."""

    def render(self, task: Task) -> Text:
        step_seconds = task.fields.get("step_seconds")
        if step_seconds is None or task.total is None:
            return Text("-:--:--", style="progress.remaining")
        return Text(format_eta(eta_seconds(task.total - task.completed, step_seconds,
                                           time.monotonic() - task.fields["updated"])), style="progress.remaining")


def eta_seconds(steps_left: float, step_seconds: float, since_update: float) -> float:
    """Seconds left: `steps_left` steps of `step_seconds`, less what has passed of the current one."""
    return max(0.0, steps_left * step_seconds - since_update)


def format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


class TrainProgress:
    def __init__(self, total: int, start: int = 0) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"), StepEtaColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._task = self._progress.add_task(TRAIN, total=total, completed=start, stats="", step_seconds=None,
                                             updated=time.monotonic())
        self._first_step, self._began = start, time.monotonic()

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        self._began = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def during(self, description: str, work: Callable[[], T]) -> T:
        """Run `work` with the bar labelled `description` (BASE_EVAL: the evaluation before step 1, which would
        otherwise sit unlabelled at 0/N). The display starts here and goes on into the steps (`with progress`
        keeps it); the step clock starts after `work`."""
        self._progress.start()
        self._progress.update(self._task, description=description)
        try:
            result = work()
        except BaseException:
            self._progress.stop()
            raise
        self._progress.update(self._task, description=TRAIN)
        self._began = time.monotonic()
        return result

    def update(self, step: int, record: dict[str, Any]) -> None:
        now = time.monotonic()
        done = step - self._first_step
        stats = f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  {record['tokens_per_s']:,.0f} tok/s"
        self._progress.update(self._task, completed=step, stats=stats, updated=now,
                              step_seconds=(now - self._began) / done if done > 0 else None)

    def line(self, width: int = 200) -> str:
        """The bar as plain text, as it would be drawn now."""
        console = Console(width=width, file=io.StringIO(), color_system=None)
        console.print(self._progress.make_tasks_table(self._progress.tasks))
        return console.file.getvalue()  # type: ignore[attr-defined]
