"""Writes that never leave half a file or half a folder behind: the one place tunesmith does this.

Every artefact a user keeps (run.json, checkpoints, saved weights, merged models, exports, the data cache)
is built beside its final name and then renamed into place with one `os.replace`, atomic on POSIX: a crash
or a full disk leaves either the old version or the new one, plus at most a hidden `.tmp-*` leftover that
the next write of the same kind clears. With `durable=True` every file and folder entry is fsynced before
the rename, so the new version also survives a power cut.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".del-"


def write_text_atomic(path: str | Path, text: str, *, durable: bool = False) -> Path:
    """Replace `path` with `text` in one rename."""
    with atomic_file(path, "w", durable=durable) as handle:
        handle.write(text)
    return Path(path)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", *, durable: bool = False) -> Iterator[IO]:
    """A handle on a temporary file beside `path` that becomes `path` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}-")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_path(path.parent)


def build_folder(target: str | Path, fill: Callable[[Path], object], *, durable: bool = False) -> Path:
    """Create `target` by letting `fill` write into a fresh sibling folder, then swap it in.

    An existing `target` is renamed aside before the new one takes its name and only then deleted, so
    there is no moment without a complete version. On any failure the partial folder is removed and the
    old `target` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    try:
        with disk_full_as_oserror(tmp):
            fill(tmp)
        if durable:
            for file in tmp.rglob("*"):
                fsync_path(file)
            fsync_path(tmp)
        old = _set_aside(target) if target.exists() else None
        os.replace(tmp, target)
        if durable:
            fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        remove_path(old)
    return target


_DISK_FULL_SIGNS = ("no space left", "storagefull", "code: 28", "iostream error", "unexpected pos", "disk quota")


@contextlib.contextmanager
def disk_full_as_oserror(where: Path) -> Iterator[None]:
    """Report a full disk as OSError(ENOSPC) whichever library hit it.

    torch.save says `RuntimeError: basic_ios::clear: iostream error` or `unexpected pos`, safetensors a
    `SafetensorError ... StorageFull`: neither is an OSError, so without this a full disk looked like a
    bug. Checked here, before the partial folder is removed, while the disk really is full.
    """
    try:
        yield
    except OSError:
        raise
    except Exception as err:
        message = str(err).lower()
        if any(sign in message for sign in _DISK_FULL_SIGNS) or _nearly_full(where):
            raise OSError(errno.ENOSPC, "No space left on device", str(where)) from err
        raise


def _nearly_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path).free < 1024 * 1024
    except OSError:
        return False


def discard(path: str | Path) -> None:
    """Delete a folder (or file) by renaming it to a hidden trash name first: a crash during the slow
    delete never leaves a half-deleted folder under a name that looks valid."""
    remove_path(_set_aside(Path(path)))


def remove_leftovers(folder: str | Path, stem: str = "") -> None:
    """Remove `.tmp-<stem>*` and `.del-*` entries a crash left in `folder` (only call where no write of
    the same kind can be in progress)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith((f"{TMP_PREFIX}{stem}", TRASH_PREFIX)):
            remove_path(path)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (the names of the files in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_aside(path: Path) -> Path:
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{os.urandom(4).hex()}")
    os.replace(path, trash)
    return trash
