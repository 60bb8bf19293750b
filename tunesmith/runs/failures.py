"""A run that stops says why, in run.json and in one clear message.

`recording_failures` wraps the training loop. Whatever ends it early is written into run.json before the
process goes: an exception becomes status `failed` with its reason, SIGTERM (a scheduler's time limit,
`kill`) becomes `killed`; only kill -9 and power cuts leave `running` behind, which the next start
recognises through the lock (prior.py). A full disk (ENOSPC, EDQUOT) is a user problem, not a bug: it
becomes one UserError saying where space is needed and that earlier checkpoints are intact (checkpoint
writes are atomic), instead of a chain of tracebacks from every cleanup that also hit the full disk.
"""

from __future__ import annotations

import contextlib
import errno
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from tunesmith.errors import UserError

DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class RecordedStop(UserError):
    """A stop whose status and reason the loop has already written (a divergence): recorded as is."""


class Terminated(BaseException):
    """SIGTERM arrived; raised inside the loop so the run can record it (a BaseException, like Ctrl-C)."""


@contextlib.contextmanager
def recording_failures(record: Callable[[str, str], object], run_dir: Path) -> Iterator[None]:
    """Run the block; on an early end call `record(status, reason)` (best effort) and re-raise cleanly."""
    previous = _install_sigterm()
    try:
        yield
    except Terminated:
        _record_quietly(record, "killed", "SIGTERM: the process was asked to stop")
        raise SystemExit(143) from None
    except OSError as err:
        if err.errno not in DISK_FULL:
            _record_quietly(record, "failed", f"{type(err).__name__}: {err}")
            raise
        _record_quietly(record, "failed", f"disk full: {err.strerror}")
        raise UserError(disk_full_message(run_dir, err)) from None
    except (KeyboardInterrupt, SystemExit, RecordedStop):
        raise  # the loop records an interrupt itself, after saving a checkpoint
    except Exception as err:
        _record_quietly(record, "failed", f"{type(err).__name__}: {err}"[:2000])
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def disk_full_message(run_dir: Path, err: OSError) -> str:
    from tunesmith.train.checkpoint import latest_checkpoint

    last = latest_checkpoint(run_dir)
    kept = f"; the earlier checkpoint {last} is intact" if last else ""
    return (f"disk full while writing {err.filename or run_dir} ({err.strerror}){kept}. Free space on that disk "
            "(or lower train.keep_checkpoints), then continue with: tunesmith train RECIPE --resume")


def _record_quietly(record: Callable[[str, str], object], status: str, reason: str) -> None:
    """Record the status; a second failure here (the disk is still full) must not hide the first."""
    with contextlib.suppress(Exception):
        record(status, reason)


def _install_sigterm() -> signal.Handlers | Callable | int | None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        return signal.getsignal(signal.SIGTERM)
