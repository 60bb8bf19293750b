"""Store folders are written under a lock, and the half-written ones a killed preparation left are removed.

A store is filled under a hidden `.tmp-<key>-<random>` name and renamed into place (`runs/atomic.build_folder`);
a preparation killed with `kill -9` (or a machine that lost power) leaves that folder behind, as large as the
part of the corpus it had tokenized. Every writer here holds an exclusive `flock` on `<folder>/.writer.lock`
from the folder's first moment until after the rename; the kernel drops the lock when the writer dies. So
before writing a store, `remove_stale` deletes the temporary folders of this cache that:

* carry our name (`.tmp-` + a 64-hex key + mkdtemp's suffix): nothing else in the folder is touched;
* whose lock nobody holds (the writer died);
* and that changed no later than `MIN_AGE_S` seconds ago, so a writer between creating its folder and taking
  the lock is never mistaken for a dead one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.runs.atomic import TMP_PREFIX, build_folder, discard

if TYPE_CHECKING:
    from tunesmith.data.prepared import PreparedData
    from tunesmith.recipe.spec import DataSpec

logger = logging.getLogger(__name__)

logger = logging.getLogger(__name__)

WRITER_LOCK = ".writer.lock"
MIN_AGE_S = 60.0
_OURS = re.compile(re.escape(TMP_PREFIX) + r"[0-9a-f]{64}-[a-z0-9_]+")


def build_store(target: Path, fill: Callable[[Path], object]) -> Path:
    """`build_folder(target, fill, durable=True)` with the writer's lock held throughout, after the dead
    writers' leftovers beside `target` are removed."""
    remove_stale(target.parent)
    with contextlib.ExitStack() as held:

        def locked(folder: Path) -> None:
            fd = os.open(folder / WRITER_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
            held.callback(os.close, fd)  # closed (the lock dropped) once the folder is renamed into place
            fcntl.flock(fd, fcntl.LOCK_EX)
            fill(folder)

        built = build_folder(target, locked, durable=True)
        (built / WRITER_LOCK).unlink(missing_ok=True)  # the store is in place: no cleaner looks at it any more
        return built


def remove_stale(root: Path, min_age: float = MIN_AGE_S) -> list[Path]:
    """Delete the temporary store folders in `root` whose writer is gone (module docstring); those removed."""
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for path in sorted(root.iterdir()):
            if _OURS.fullmatch(path.name) and path.is_dir() and not path.is_symlink() and _abandoned(path, min_age):
                discard(path)
                removed.append(path)
    if removed:
        logger.info("removed %d half-written data store folder(s) a killed preparation left in %s", len(removed), root)
    return removed


def _abandoned(path: Path, min_age: float) -> bool:
    try:
        if time.time() - path.stat().st_mtime <= min_age:
            return False  # perhaps a writer between creating the folder and taking its lock
        fd = os.open(path / WRITER_LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True  # old, and no writer ever locked it
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held: a live writer
        return False
    finally:
        os.close(fd)
    return True


class _Rewritten(Exception):
    """A data file changed while the store was being written."""


def write_and_load(key: str, spec: DataSpec, sources: dict[str, str], write: Callable[[Path], object]) -> PreparedData | None:
    """The store `key` built by `write(folder)` (build_store) and read back, for the two-pass writers; None
    when it cannot be written (a folder that fails, a full disk) or a data file changed while it was read
    (no store under the old hash): then the general path prepares the data."""
    from tunesmith.data.cache import CACHE_ENV, cache_dir, load_prepared
    from tunesmith.data.pipeline import data_sources

    def fill(folder: Path) -> None:
        write(folder)
        if data_sources(spec) != sources:
            raise _Rewritten()

    try:
        build_store(cache_dir() / key, fill)
    except _Rewritten:
        return None
    except OSError as err:
        logger.warning("could not write the data store under %s (%s); set %s to a writable folder, or "
                       "data.cache: false", cache_dir(), err, CACHE_ENV)
        return None
    stored = load_prepared(key)
    if stored is not None:
        stored.from_cache = False
    return stored
