"""Rows of every format go into the store in two passes (data/row_stream.py), never as a list of the corpus,
and the store equals the general in-memory preparation; a cache folder that cannot be written costs no second
tokenization."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data import parallel, pipeline
from tunesmith.data.cache import CACHE_ENV
from tunesmith.data.pipeline import prepare_data
from tunesmith.data.store import StoredSamples
from tunesmith.errors import DataError
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict


def _recipe(method: str, train: Any, data: dict[str, Any], cache: bool = True, max_seq_len: int = 256) -> Any:
    return recipe_from_dict({"name": "rows", "model": "unused", "method": method,
                             "data": {"train": train, "eval": 0.1, "cache": cache, "template": "chatml", **data},
                             "train": {"max_seq_len": max_seq_len}})


def _with_bad_lines(source: Path, target: Path) -> Path:
    lines = source.read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # cut off: not JSON
    lines[7] = json.dumps({"unrelated": 1})  # JSON, but no field of the format
    target.write_text("\n".join(lines) + "\n")
    return target


CASES = {
    "dpo pairs at a short length": ("dpo", "preference_dpo_en_demo_300.jsonl", {}, 96),
    "sft sharegpt, an eval file, max_rows": ("sft", "sharegpt_glaive_toolcall_300.jsonl",
                                             {"eval": "EVAL", "max_rows": 200, "train_on": "last"}, 256),
    "sft alpaca with bad lines skipped": ("sft", "BAD", {"on_bad_row": "skip", "eval": 0.2}, 256),
    "cpt on a JSONL text column": ("cpt", "TEXT", {}, 64),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_pass_rows_store_equals_the_general_path(case: str, shared_data: Path, stories260k: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    method, name, data, max_len = CASES[case]
    train: Any = str(shared_data / name)
    if name == "BAD":
        train = str(_with_bad_lines(shared_data / "alpaca_1k.jsonl", tmp_path / "bad.jsonl"))
    if name == "TEXT":
        lines = (shared_data / "tinystories_valid_head.txt").read_text().splitlines()
        (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines if t.strip()))
        train = str(tmp_path / "t.jsonl")
    if data.get("eval") == "EVAL":
        data = {**data, "eval": str(shared_data / "sharegpt_glaive_toolcall_300.jsonl")}
    tokenizer = load_tokenizer(str(stories260k))
    general = prepare_data(_recipe(method, train, {**data, "cache": False}, max_seq_len=max_len), tokenizer)
    monkeypatch.setattr(pipeline, "_examples", lambda *a: pytest.fail("the rows went through the general path"))
    monkeypatch.setattr(parallel, "SLICE_CHARS", 20_000)  # several slices, and a text stream cut across them
    stored = prepare_data(_recipe(method, train, data, max_seq_len=max_len), tokenizer)
    assert isinstance(stored.train, StoredSamples) and not stored.from_cache
    assert dataclasses.replace(stored, from_cache=False) == general
    assert stored.summary() == general.summary() and stored.eval
    if name == "BAD":
        assert len(stored.bad_rows) == 2 and "bad.jsonl:4: invalid JSON" in stored.bad_rows[0]


def test_a_bad_line_stops_the_two_pass_store_naming_file_and_line(shared_data: Path, stories260k: Path,
                                                                  tmp_path: Path) -> None:
    bad = _with_bad_lines(shared_data / "alpaca_1k.jsonl", tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match=r"bad\.jsonl:4: invalid JSON"):
        prepare_data(_recipe("sft", str(bad), {}), load_tokenizer(str(stories260k)))


def test_a_truncated_json_array_names_the_file_and_line(stories260k: Path, tmp_path: Path) -> None:
    rows = [{"instruction": f"say {i}", "output": str(i)} for i in range(5)]
    text = json.dumps(rows, indent=1)
    (tmp_path / "rows.json").write_text(text[: len(text) - 40])  # the array never closes
    for cache in (True, False):
        with pytest.raises(DataError, match=r"rows\.json:\d+: invalid JSON"):
            prepare_data(_recipe("sft", str(tmp_path / "rows.json"), {"cache": cache}), load_tokenizer(str(stories260k)))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into a read-only folder")
@pytest.mark.parametrize("name", ["sharegpt_glaive_toolcall_300.jsonl", "tinystories_valid_head.txt"])
def test_a_read_only_cache_folder_costs_no_second_tokenization(name: str, shared_data: Path, stories260k: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _read_only_case(name, shared_data, stories260k, tmp_path, monkeypatch)


def test_a_cache_folder_that_fails_costs_no_second_tokenization(shared_data: Path, stories260k: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """As root a read-only folder is writable, so the folder's creation fails here as it would there."""
    import tempfile

    def refused(*args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    for name in ("sharegpt_glaive_toolcall_300.jsonl", "tinystories_valid_head.txt"):
        _read_only_case(name, shared_data, stories260k, tmp_path / name, monkeypatch)


def _read_only_case(name: str, shared_data: Path, stories260k: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = root / "cache"
    (cache / "data").mkdir(parents=True)
    (cache / "data").chmod(0o555)
    monkeypatch.setenv(CACHE_ENV, str(cache))
    tokenizer = load_tokenizer(str(stories260k))
    calls: list[int] = []
    real = parallel.encode_texts
    real_samples = pipeline.to_samples
    monkeypatch.setattr(parallel, "encode_texts", lambda tok, texts: calls.append(len(texts)) or real(tok, texts))
    monkeypatch.setattr(pipeline, "to_samples", lambda ex, *a, **k: calls.append(len(ex)) or real_samples(ex, *a, **k))
    data = prepare_data(_recipe("cpt" if name.endswith(".txt") else "sft", str(shared_data / name), {}), tokenizer)
    (cache / "data").chmod(0o755)
    assert not isinstance(data.train, StoredSamples)
    assert sum(calls) == len(data.train_examples) + len(data.eval_examples)  # each example tokenized once
