"""The half-written store folders a killed preparation leaves are removed, and only those: ours by name, and
with no live writer holding their lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tunesmith.data.leftovers import WRITER_LOCK, build_store, remove_stale

KEY = "ab" * 32
_WRITER = """
import sys, time
from pathlib import Path
from tunesmith.data.leftovers import build_store

def fill(folder):
    (folder / "train.tokens.bin").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(600)

build_store(Path(sys.argv[1]), fill)
"""


def test_a_live_writers_folder_stays_and_a_killed_ones_is_removed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / KEY)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        folder = Path(writer.stdout.readline().strip())
        assert folder.parent == tmp_path and (folder / WRITER_LOCK).is_file()
        assert remove_stale(tmp_path, min_age=0) == [] and folder.is_dir()  # its writer holds the lock
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    assert remove_stale(tmp_path, min_age=0) == [folder] and not folder.exists()


def test_only_our_old_unlocked_folders_are_removed(tmp_path: Path) -> None:
    old = time.time() - 3600
    foreign = tmp_path / ".tmp-notes"  # not a store's name
    young = tmp_path / f".tmp-{KEY}-young123"  # a writer may be about to lock it
    abandoned = tmp_path / f".tmp-{KEY}-dead_456"
    store = tmp_path / KEY
    for folder in (foreign, young, abandoned, store):
        folder.mkdir()
        (folder / "meta.json").write_text("{}")
    for folder in (foreign, abandoned, store):
        os.utime(folder, (old, old))
    assert remove_stale(tmp_path) == [abandoned]
    assert foreign.is_dir() and young.is_dir() and store.is_dir()


def test_writing_a_store_clears_what_a_dead_writer_left(tmp_path: Path) -> None:
    dead = tmp_path / f".tmp-{KEY}-dead_789"
    dead.mkdir()
    (dead / WRITER_LOCK).touch()
    os.utime(dead, (time.time() - 3600,) * 2)
    build_store(tmp_path / KEY, lambda folder: (folder / "COMPLETE").write_text(KEY))
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY]


def test_a_store_whose_data_changed_while_it_was_written_is_not_kept(tmp_path: Path, monkeypatch) -> None:
    """The two-pass writers read the data twice: a file rewritten in between must not leave a store under the
    first hash (the next run would train on a mix of the old and the new file)."""
    from tunesmith.data.cache import CACHE_ENV, cache_dir
    from tunesmith.data.leftovers import write_and_load
    from tunesmith.data.pipeline import data_sources
    from tunesmith.recipe.spec import recipe_from_dict

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "one"}\n')
    spec = recipe_from_dict({"name": "r", "model": "unused", "data": {"train": str(data)}}).data
    sources = data_sources(spec)

    def write(folder: Path) -> None:
        (folder / "train.tokens.bin").write_bytes(b"x")
        data.write_text('{"text": "one"}\n{"text": "two"}\n')  # rewritten while the store was written

    assert write_and_load(KEY, spec, sources, write) is None
    assert not (cache_dir() / KEY).exists()
