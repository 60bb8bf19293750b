"""One training process per run folder: an exclusive lock beside it, naming who holds it.

Two `tunesmith train` of the same name started together used to both pass the "folder already holds a
run" check; one then deleted the other's checkpoint, or both wrote interleaved metrics. The lock is a file
`output/.<name>.lock` locked with `fcntl.flock` and holding {pid, host, started, command}:

- the kernel drops a flock when its holder dies (kill -9 included), so a lock left by a dead process is
  stale by construction: the next start takes it over and says whose it was;
- a second start while the holder lives is refused with the holder's pid, host and start time;
- the file lives beside the run folder, not inside it, so `--overwrite` can swap the folder out while
  holding the lock.

flock is per open file: a second lock of the same path from the same process (a test that builds two
trainers in a row) takes over the first, since one process never trains two runs at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError

_HELD: dict[Path, RunLock] = {}


def lock_path(run_dir: Path) -> Path:
    """`output/.<name>.lock` for the run folder `output/<name>`."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


@dataclass
class LockHolder:
    """Who took a lock (read back from the lock file)."""

    pid: int | None
    host: str
    started: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started} ({self.command})"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LockHolder:
        pid = raw.get("pid")
        return cls(pid=pid if isinstance(pid, int) else None, host=str(raw.get("host", "?")),
                   started=str(raw.get("started", "?")), command=str(raw.get("command", "?")))


class RunLock:
    """An acquired lock on a run folder; `release()` (or process exit) frees it."""

    def __init__(self, run_dir: Path, fd: int, previous: LockHolder | None) -> None:
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self._fd: int | None = fd
        self.previous = previous
        """The holder recorded in the file when we took it over (a process that died holding it), if any."""

    def release(self) -> None:
        """Unlink the lock file, then drop the lock (a waiter that opened the old file re-checks the path)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.path):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None
        if _HELD.get(self.path) is self:
            del _HELD[self.path]

    @property
    def held(self) -> bool:
        return self._fd is not None


def acquire_lock(run_dir: Path) -> RunLock:
    """Lock `run_dir` for this process, or raise a UserError naming the live holder."""
    path = lock_path(run_dir).resolve()
    if path in _HELD:
        _HELD.pop(path).release()
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise UserError(
                f"run folder {run_dir} is in use by {who}; wait for it to finish, stop it, or choose another "
                "name (name=...). Lock file: " + str(path)
            ) from None
        if not _same_file(fd, path):  # the holder released and unlinked it between our open and flock
            os.close(fd)
            continue
        previous = _read_holder(fd)
        _write_holder(fd)
        lock = RunLock(run_dir, fd, previous)
        lock.path = path
        _HELD[path] = lock
        return lock
    raise UserError(f"could not lock {path}: it keeps being replaced; is another tunesmith starting the same run?")


def read_lock(run_dir: Path) -> LockHolder | None:
    """The holder written in the lock file, if any (it may be dead: only `acquire_lock` can tell)."""
    try:
        raw = json.loads(lock_path(run_dir).read_text())
    except (OSError, ValueError):
        return None
    return LockHolder.from_json(raw) if isinstance(raw, dict) else None


def holder_alive(run_dir: Path) -> bool | None:
    """Whether a live process holds `run_dir`'s lock, without touching the lock (taking it, even for a moment,
    could refuse a start that races with the check): False when the lock file is gone, or names a process of
    this host that has ended (or whose pid a later process reuses); None when this host cannot tell (held from
    another host, or the file is being written)."""
    path = lock_path(run_dir)
    if not path.exists():
        return False  # released (it is unlinked on release) or never taken here: no process holds the run
    holder = read_lock(run_dir)
    if holder is None or holder.pid is None or holder.host != socket.gethostname():
        return None
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    began = _process_start(holder.pid)
    try:
        locked = datetime.fromisoformat(holder.started).timestamp()
    except ValueError:
        return True
    return not (began is not None and began > locked + 2)  # started after the lock was taken: a reused pid


def _process_start(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _read_holder(fd: int) -> LockHolder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = json.loads(os.read(fd, 65536).decode("utf-8") or "null")
    except (OSError, ValueError):
        return None
    return LockHolder.from_json(raw) if isinstance(raw, dict) and raw else None


def _write_holder(fd: int) -> None:
    info = {
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(info).encode())


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
