"""The memory-mapped prepared-data store: a store read back is exactly the in-memory preparation, it maps
rather than loads, a store whose writer died is a miss, and training plans over it as over a list."""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tunesmith.data import store
from tunesmith.data.cache import CACHE_ENV, cache_dir
from tunesmith.data.pipeline import prepare_data
from tunesmith.data.store import StoredExamples, StoredSamples
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import Recipe, recipe_from_dict
from tunesmith.train.batches import plan_batches

CASES = {  # method, data file, extra data settings: CPT on raw text, SFT on Alpaca and on ShareGPT tool calls
    "cpt tinystories": ("cpt", "tinystories_train_first1000.txt", {}),
    "sft alpaca": ("sft", "alpaca_1k.jsonl", {"template": "chatml", "max_rows": 300}),
    "sft sharegpt": ("sft", "sharegpt_glaive_toolcall_300.jsonl", {"template": "chatml", "train_on": "last"}),
}


def _recipe(method: str, train: Path, data: dict[str, Any], cache: bool = True) -> Recipe:
    return recipe_from_dict({"name": "store-test", "model": "unused", "method": method,
                             "data": {"train": str(train), "eval": 0.05, "cache": cache, **data},
                             "train": {"max_seq_len": 256}})


def _stores() -> list[Path]:
    folder = cache_dir()
    return sorted(p for p in folder.iterdir() if (p / store.COMPLETE).is_file()) if folder.is_dir() else []


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_store_holds_exactly_the_in_memory_preparation(case: str, shared_data: Path, stories260k: Path) -> None:
    method, name, data = CASES[case]
    tokenizer = load_tokenizer(str(stories260k))
    memory = prepare_data(_recipe(method, shared_data / name, data, cache=False), tokenizer)
    written = prepare_data(_recipe(method, shared_data / name, data), tokenizer)
    read = prepare_data(_recipe(method, shared_data / name, data), load_tokenizer(str(stories260k)))
    assert isinstance(memory.train, list) and not written.from_cache and read.from_cache
    for stored in (written, read):
        assert isinstance(stored.train, StoredSamples) and isinstance(stored.train_examples, StoredExamples)
        assert [s.input_ids for s in stored.train] == [s.input_ids for s in memory.train]  # tokens and boundaries
        assert [s.labels for s in stored.train] == [s.labels for s in memory.train]
        assert [s.truncated for s in stored.train] == [s.truncated for s in memory.train]
        assert list(stored.eval) == memory.eval and list(stored.eval_examples) == memory.eval_examples
        assert list(stored.train_examples) == memory.train_examples
        assert stored.summary() == memory.summary()
    assert dataclasses.replace(read, from_cache=False) == memory
    assert memory.eval and any(-100 in s.labels for s in memory.train) == (method == "sft")


def test_reading_maps_the_arrays_instead_of_loading_them(shared_data: Path, stories260k: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = _recipe("cpt", shared_data / "tinystories_train_first1000.txt", {})
    prepare_data(recipe, load_tokenizer(str(stories260k)))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("a store is data: nothing is unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a store is data: nothing is unpickled"))
    read = prepare_data(recipe, load_tokenizer(str(stories260k)))
    train = read.train
    assert isinstance(train, StoredSamples) and read.from_cache
    for array in (train.tokens, train.mask, train.offsets, train.truncated):
        assert isinstance(array, np.memmap)
    assert train.tokens.dtype == np.uint16  # a 512-token vocabulary: two bytes a token
    assert {p.suffix for p in _stores()[0].iterdir()} <= {".bin", ".json", ".jsonl", ""}


_WRITER_DIES = """
import os, signal, sys
from tunesmith.data import store
from tunesmith.data.pipeline import prepare_data
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict

def die(*args, **kwargs):  # every array is written; the process is killed before the store is finished
    os.kill(os.getpid(), signal.SIGKILL)

store.finish = die
import tunesmith.data.cache as cache
import tunesmith.data.text_stream as text_stream
cache.finish = die
text_stream.finish = die
recipe = recipe_from_dict({"name": "t", "model": "unused", "method": "cpt", "data": {"train": sys.argv[1]},
                           "train": {"max_seq_len": 256}})
prepare_data(recipe, load_tokenizer(sys.argv[2]))
"""


def test_a_writer_killed_mid_write_leaves_no_store(shared_data: Path, stories260k: Path) -> None:
    train = shared_data / "tinystories_train_first1000.txt"
    env = {**os.environ, CACHE_ENV: os.environ[CACHE_ENV], "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", _WRITER_DIES, str(train), str(stories260k)], env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".tmp-") for p in cache_dir().iterdir()), "the killed writer left its partial folder"
    assert _stores() == []
    data = prepare_data(_recipe("cpt", train, {"eval": 0.1}), load_tokenizer(str(stories260k)))
    assert not data.from_cache and len(_stores()) == 1


@pytest.mark.parametrize("packing", [True, False])
def test_a_plan_over_the_store_collates_what_a_plan_over_the_list_does(
    packing: bool, shared_data: Path, stories260k: Path
) -> None:
    tokenizer = load_tokenizer(str(stories260k))
    data = prepare_data(_recipe("sft", shared_data / "alpaca_1k.jsonl", {"template": "chatml", "max_rows": 200}),
                        tokenizer)
    assert isinstance(data.train, StoredSamples)
    options: dict[str, Any] = {"batch_size": 3, "accum": 2, "epochs": 2, "max_steps": None, "max_seq_len": 256,
                               "packing": packing, "pad_id": 0, "seed": 5}
    stored, listed = plan_batches(data.train, **options), plan_batches(list(data.train), **options)
    assert stored.steps == listed.steps > 10
    for step in (0, 7, stored.steps - 1):
        assert stored.real_tokens(step) == listed.real_tokens(step)
        for a, b in zip(stored.step_batches(step), listed.step_batches(step), strict=True):
            assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    assert all(isinstance(entry[0], (int, list)) for entry in stored.micro_batches.plan)  # positions, not samples


def test_raw_text_files_skip_rows_but_give_the_examples_rows_give(shared_data: Path) -> None:
    from tunesmith.data.formats import parse_rows
    from tunesmith.data.loading import load_rows, text_lines
    from tunesmith.data.pipeline import _load_examples

    files = [str(shared_data / "tinystories_train_first1000.txt"), str(shared_data / "tinystories_valid_head.txt")]
    spec = _recipe("cpt", shared_data, {}).data
    fast = _load_examples(files, None, spec)
    rows = parse_rows(load_rows(files), "auto")
    assert text_lines(files) is not None and len(fast.examples) > 1000
    assert (fast.examples, fast.format, fast.detected, fast.bad_rows) == (rows.examples, rows.format, True, [])
    assert text_lines([files[0], str(shared_data / "alpaca_1k.jsonl")]) is None  # any other file: rows as before


@pytest.mark.parametrize("step", [1, 3, 7, 1 << 22])
def test_trained_counts_summed_in_pieces_equal_each_samples_own(step: int, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted a few tokens at a time (so no array as long as the split is made), across empty samples too."""
    import random

    from tunesmith.data.store import SampleArrays, SampleWriter
    from tunesmith.data.types import Sample

    monkeypatch.setattr(store, "SUM_TOKENS", step)
    rng = random.Random(step)
    for trial in range(100):
        samples = []
        for _ in range(rng.randint(0, 12)):
            ids = [rng.randint(0, 50) for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 9, 20]))]
            samples.append(Sample(ids, [t if rng.random() < 0.5 else -100 for t in ids]))
        folder = tmp_path / str(trial)
        folder.mkdir()
        writer = SampleWriter(folder, "train", np.dtype(np.uint16))
        writer.add(SampleArrays.from_samples(samples))
        sizes = writer.close()
        stored = StoredSamples(folder, "train", np.dtype(np.uint16), sizes["samples"], sizes["tokens"])
        assert stored.trained_per_sample().tolist() == [s.trained_tokens for s in samples]
        assert list(stored) == samples


@pytest.mark.parametrize("data", [{"eval": 0.1}, {"eval": 0.2, "max_rows": 700}, {"eval": 0.0}])
def test_raw_text_streamed_into_the_store_equals_the_general_path(data: dict[str, Any], shared_data: Path,
                                                                  stories260k: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder of .txt files goes through text_stream (two passes, never a list of the whole corpus)."""
    from tunesmith.data import pipeline

    folder = tmp_path / "texts"
    folder.mkdir()
    for name in ("tinystories_train_first1000.txt", "tinystories_valid_head.txt"):
        (folder / name).write_bytes((shared_data / name).read_bytes())
    tokenizer = load_tokenizer(str(stories260k))
    general = prepare_data(_recipe("cpt", folder, {**data, "cache": False}), tokenizer)
    monkeypatch.setattr(pipeline, "_examples", lambda *a: pytest.fail("raw text went through the general path"))
    streamed = prepare_data(_recipe("cpt", folder, data), tokenizer)
    assert isinstance(streamed.train, StoredSamples) and not streamed.from_cache
    assert dataclasses.replace(streamed, from_cache=False) == general
    assert streamed.summary() == general.summary() and (streamed.duplicates, streamed.overlap) != (0, 0)
