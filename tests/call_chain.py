"""Which tunesmith files a call passes through on its way from a CLI verb to a function: the hops a reader
follows from `tunesmith VERB` to where the behaviour happens.

The chain is read from the live Python stack the first time the target function runs, so it is what the code
does, not what a reader guesses. A worker thread's stack starts in the thread, so the stack that started the
thread is put in front of it. Two kinds of frame are not hops: `tunesmith/cli.py` (typer's dispatch to the
verb) and the command layer's error wrapper (`commands/common.py`), which a reader never has to open to follow
the call.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import tunesmith

PACKAGE = Path(tunesmith.__file__).resolve().parent
NOT_HOPS = {"cli.py", "commands/common.py", "commands/dataclass_command.py", "__main__.py"}


def chain_of_files(filenames: list[str]) -> list[str]:
    """The tunesmith files among `filenames` (a stack, outermost first), from the first command-layer file on,
    each once."""
    files: list[str] = []
    started = False
    for filename in filenames:
        path = Path(filename).resolve()
        if PACKAGE not in path.parents:
            continue
        name = path.relative_to(PACKAGE).as_posix()
        started = started or (name.startswith("commands/") and name not in NOT_HOPS)
        if started and name not in NOT_HOPS and name not in files:
            files.append(name)
    return files


def stack_files(frame: FrameType | None) -> list[str]:
    """The files of the stack ending at `frame`, outermost first, without ASGI middleware frames."""
    files: list[str] = []
    while frame is not None:
        code = frame.f_code
        if not (code.co_name == "__call__" and {"scope", "receive", "send"} <= set(code.co_varnames)):
            files.append(code.co_filename)
        frame = frame.f_back
    return files[::-1]


@contextmanager
def recorded_chain(*targets: Callable[..., Any]) -> Iterator[list[str]]:
    """Yields a list that holds, once one of `targets` has run inside the block, the files on the way to it.

    A decorated target is unwrapped first: decorators such as `torch.no_grad()` share one wrapper code object
    among every function they wrap."""
    codes: set[CodeType] = {inspect.unwrap(target).__code__ for target in targets}
    found: list[str] = []
    original_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        thread._tunesmith_origin = stack_files(sys._getframe(1))  # type: ignore[attr-defined]
        original_start(thread)

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes and not found:
            origin = getattr(threading.current_thread(), "_tunesmith_origin", [])
            found.extend(chain_of_files([*origin, *stack_files(frame)]))

    threading.Thread.start = start  # type: ignore[method-assign]
    sys.setprofile(hook)
    threading.setprofile(hook)
    try:
        yield found
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        threading.Thread.start = original_start  # type: ignore[method-assign]
