"""Preparation over several processes gives exactly what one process gives, and it really forks workers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data import parallel, row_stream, text_stream
from tunesmith.data.pipeline import prepare_data, to_samples
from tunesmith.data.store import SampleArrays
from tunesmith.errors import UserError
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import Recipe, recipe_from_dict

CASES = {
    "cpt": ("tinystories_train_first1000.txt", {}),
    "sft": ("alpaca_1k.jsonl", {"template": "chatml"}),
    "dpo": ("preference_dpo_en_demo_300.jsonl", {"template": "chatml"}),
}


def _recipe(method: str, train: Path, data: dict[str, Any], num_proc: int, cache: bool = True) -> Recipe:
    return recipe_from_dict({"name": "parallel-test", "model": "unused", "method": method,
                             "data": {"train": str(train), "eval": 0.05, "num_proc": num_proc, "cache": cache, **data},
                             "train": {"max_seq_len": 128}})


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Slices of 40k characters and no lower limit, so the real ~1 MB files go to several workers; each
    task leaves a file named by the pid that ran it."""
    monkeypatch.setattr(parallel, "SLICE_CHARS", 40_000)
    monkeypatch.setattr(parallel, "PARALLEL_MIN_CHARS", 0)
    work, pids = parallel._work, tmp_path / "pids"
    pids.mkdir()

    def recorded(task: tuple[int, int]) -> SampleArrays:
        (pids / str(os.getpid())).touch()
        return work(task)

    monkeypatch.setattr(parallel, "_work", recorded)
    encode = text_stream.encode_stream

    def recorded_stream(tokenizer: Any, texts: list[str]) -> SampleArrays:  # raw text goes through text_stream
        (pids / str(os.getpid())).touch()
        return encode(tokenizer, texts)

    monkeypatch.setattr(text_stream, "encode_stream", recorded_stream)
    rows = row_stream._work

    def recorded_rows(piece: Any) -> Any:  # rows of the other formats go through row_stream
        (pids / str(os.getpid())).touch()
        return rows(piece)

    monkeypatch.setattr(row_stream, "_work", recorded_rows)
    return pids


@pytest.mark.parametrize("case", sorted(CASES))
def test_several_processes_prepare_exactly_what_one_does(case: str, small_slices: Path, shared_data: Path,
                                                         stories260k: Path) -> None:
    name, data = CASES[case]
    # one process into memory, three into the store
    tokenizer = load_tokenizer(str(stories260k))
    one = prepare_data(_recipe(case, shared_data / name, data, 1, cache=False), tokenizer)
    three = prepare_data(_recipe(case, shared_data / name, data, 3), load_tokenizer(str(stories260k)))
    assert not three.from_cache and isinstance(one.train, list)
    assert [s.input_ids for s in three.train] == [s.input_ids for s in one.train]
    assert [s.labels for s in three.train] == [s.labels for s in one.train]
    assert list(three.eval) == list(one.eval) and three.summary() == one.summary()
    reference = to_samples(list(one.train_examples), tokenizer, 128, "all")  # the whole split in one call
    assert [s.input_ids for s in three.train] == [s.input_ids for s in reference]
    assert list(three.train) == reference
    workers = {int(p.name) for p in small_slices.iterdir()} - {os.getpid()}
    assert len(workers) >= 2, "the tasks ran in worker processes"


def test_num_proc_is_not_in_the_key(shared_data: Path, stories260k: Path) -> None:
    train = shared_data / "alpaca_1k.jsonl"
    prepare_data(_recipe("sft", train, {"template": "chatml", "max_rows": 50}, 1), load_tokenizer(str(stories260k)))
    again = prepare_data(_recipe("sft", train, {"template": "chatml", "max_rows": 50}, 4),
                         load_tokenizer(str(stories260k)))
    assert again.from_cache


def test_an_error_in_a_worker_reaches_the_user(small_slices: Path, tmp_path: Path, stories260k: Path) -> None:
    rows = [f'{{"messages": [{{"role": "user", "content": "q{i} {"x" * 30_000}"}}, '
            f'{{"role": "assistant", "content": "a{i}"}}]}}' for i in range(6)]
    rows.append('{"messages": [{"role": "assistant", "content": "an answer with no question"}]}')
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match="starts with an assistant message"):
        prepare_data(_recipe("sft", path, {"template": "chatml", "eval": 0.0}, 3), load_tokenizer(str(stories260k)))
