"""The prepared-data cache: a hit is exactly a fresh preparation, and any input that could change the result
changes the key."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunesmith.commands.validate import validate_recipe
from tunesmith.data import loading, pipeline
from tunesmith.data.cache import CACHE_ENV, cache_dir
from tunesmith.data.loading import Row
from tunesmith.data.pipeline import PreparedData, prepare_data
from tunesmith.data.templates import TEMPLATES
from tunesmith.errors import UserError
from tunesmith.recipe.spec import Recipe, recipe_from_dict
from tunesmith.testing.tiny import save_tiny, tiny_tokenizer

ROWS = [
    {"instruction": f"What is {a} plus {b}?", "input": "", "output": f"{a} plus {b} is {a + b}."}
    for a in range(4) for b in range(3)
]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test's own; returns where the prepared-data files go."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return cache_dir()


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return path


def make_recipe(train: str | Path, data: dict[str, Any] | None = None, **train_opts: Any) -> Recipe:
    return recipe_from_dict({
        "name": "cache-test", "model": "unused",
        "data": {"train": str(train), "eval": 0.25, "template": "plain", **(data or {})},
        "train": {"max_seq_len": 64, **train_opts},
    })


def files(cache: Path) -> list[Path]:
    """The complete stores in the cache folder (one folder per key, COMPLETE written last)."""
    return sorted(p for p in cache.iterdir() if (p / "COMPLETE").is_file()) if cache.is_dir() else []


def forbid_tokenizing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("tokenized again although the cache holds this data")

    monkeypatch.setattr(pipeline, "to_samples", fail)
    monkeypatch.setattr(pipeline, "tokenize_split", fail)


def test_a_hit_equals_a_fresh_preparation_and_skips_tokenizing(
    cache: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = make_recipe(data_file)
    first = prepare_data(recipe, tiny_tokenizer())
    assert not first.from_cache and len(files(cache)) == 1
    fresh = prepare_data(make_recipe(data_file, {"cache": False}), tiny_tokenizer())

    forbid_tokenizing(monkeypatch)
    tokenizer = tiny_tokenizer()  # a new but identical tokenizer: same fingerprint
    hit = prepare_data(recipe, tokenizer)
    assert hit.from_cache
    assert dataclasses.replace(hit, from_cache=False) == fresh
    assert hit.train and hit.eval and hit.train[0].trained_tokens
    assert tokenizer.chat_template  # the recipe's template is applied on a hit too: callers render chats with it


def _change_data(path: Path) -> Recipe:
    path.write_bytes(path.read_bytes().replace(b"0 plus 0 is 0", b"0 plus 0 is O", 1))
    return make_recipe(path)


CHANGES: dict[str, Callable[[Path], tuple[Recipe, Any]]] = {
    "one data byte": lambda path: (_change_data(path), tiny_tokenizer()),
    "template": lambda path: (make_recipe(path, {"template": "chatml"}), tiny_tokenizer()),
    "max_seq_len": lambda path: (make_recipe(path, max_seq_len=16), tiny_tokenizer()),
    "seed": lambda path: (make_recipe(path, seed=1), tiny_tokenizer()),
    "train_on": lambda path: (make_recipe(path, {"train_on": "last"}), tiny_tokenizer()),
    "tokenizer": lambda path: (make_recipe(path), tiny_tokenizer(vocab_size=300)),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_each_input_that_shapes_the_result_is_in_the_key(change: str, cache: Path, data_file: Path) -> None:
    prepare_data(make_recipe(data_file), tiny_tokenizer())
    recipe, tokenizer = CHANGES[change](data_file)
    changed = prepare_data(recipe, tokenizer)
    assert not changed.from_cache
    assert len(files(cache)) == 2
    assert dataclasses.replace(changed, from_cache=False) == prepare_data(
        recipe.model_copy(update={"data": recipe.data.model_copy(update={"cache": False})}), tokenizer
    )


def test_the_tokenizers_own_chat_template_is_in_the_key(cache: Path, data_file: Path) -> None:
    """`template: auto` uses whatever template the tokenizer ships, so the same recipe can render differently."""
    recipe = make_recipe(data_file, {"template": "auto"})
    prepare_data(recipe, tiny_tokenizer())  # no template of its own: auto falls back to plain
    own = tiny_tokenizer()
    own.chat_template = TEMPLATES["chatml"]
    data = prepare_data(recipe, own)
    assert not data.from_cache and len(files(cache)) == 2
    assert "<|im_start|>" in own.decode(data.train[0].input_ids)


DAMAGES: dict[str, tuple[str, Callable[[bytes], bytes | None]]] = {
    "garbage meta": ("meta.json", lambda whole: b"not json at all"),
    "truncated tokens": ("train.tokens.bin", lambda whole: whole[: len(whole) // 2]),
    "truncated index": ("train.index.bin", lambda whole: whole[:-8]),
    "no completion marker": ("COMPLETE", lambda whole: None),  # a store whose writer died before its end
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_store_is_a_miss_and_is_rewritten(
    damage: str, cache: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = make_recipe(data_file)
    expected = prepare_data(recipe, tiny_tokenizer())
    [store] = files(cache)
    name, spoil = DAMAGES[damage]
    path = store / name
    whole = path.read_bytes()
    spoilt = spoil(whole)
    path.unlink()
    if spoilt is not None:
        path.write_bytes(spoilt)

    again = prepare_data(recipe, tiny_tokenizer())
    assert not again.from_cache and again == expected
    assert path.read_bytes() == whole  # rewritten in full
    forbid_tokenizing(monkeypatch)
    assert prepare_data(recipe, tiny_tokenizer()).from_cache


def test_cache_off_writes_nothing_and_reads_nothing(cache: Path, data_file: Path) -> None:
    off = make_recipe(data_file, {"cache": False})
    assert not prepare_data(off, tiny_tokenizer()).from_cache
    assert not cache.exists()
    prepare_data(make_recipe(data_file), tiny_tokenizer())  # fills the cache
    assert not prepare_data(off, tiny_tokenizer()).from_cache


def test_hub_datasets_are_not_cached(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id can name different data tomorrow, so its result is never filed under today's key."""
    monkeypatch.setattr(loading, "_load_hub", lambda name, split: [Row(row, f"{name}:row {n}")
                                                                 for n, row in enumerate(ROWS, 1)])
    recipe = make_recipe("someone/some-dataset")
    first = prepare_data(recipe, tiny_tokenizer())
    assert first.sources == {"someone/some-dataset": "hub"} and first.train
    assert not prepare_data(recipe, tiny_tokenizer()).from_cache
    assert files(cache) == []


class _OpaqueTokenizer:
    """A working fast tokenizer that hides its serialised state, as tokenizers without one do."""

    def __init__(self, inner: Any) -> None:
        self.__dict__["inner"] = inner

    def __getattr__(self, name: str) -> Any:
        if name == "backend_tokenizer":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.inner, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner(*args, **kwargs)


def test_a_tokenizer_that_cannot_be_fingerprinted_runs_without_the_cache(cache: Path, data_file: Path) -> None:
    recipe = make_recipe(data_file)
    data = prepare_data(recipe, _OpaqueTokenizer(tiny_tokenizer()))
    assert data.train and files(cache) == []
    assert data == prepare_data(recipe, tiny_tokenizer())  # the wrapper tokenizes like the tokenizer it wraps


def test_a_hit_still_checks_the_format_suits_the_method(cache: Path, data_file: Path) -> None:
    dpo = recipe_from_dict({"name": "cache-test", "model": "unused", "method": "dpo",
                            "data": {"train": str(data_file), "template": "plain"}})
    prepare_data(dpo, tiny_tokenizer(), check_method=False)  # `data stats` prepares any format
    assert len(files(cache)) == 1
    with pytest.raises(UserError, match="method: dpo cannot train on"):
        prepare_data(dpo, tiny_tokenizer())


def test_an_unwritable_cache_does_not_stop_a_run(
    tmp_path: Path, data_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker))  # its data/ subfolder cannot be created
    data = prepare_data(make_recipe(data_file), tiny_tokenizer())
    assert isinstance(data, PreparedData) and data.train
    assert "could not write the data store" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([data_file.name, blocker.name])  # no stray temp file


def test_validate_says_when_the_data_came_from_the_cache(
    cache: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_tiny("llama", tmp_path / "model", vocab_size=300)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nmodel: {model}\ndata: {{train: {data_file}, template: plain}}\ntrain: {{max_seq_len: 128}}\n")
    validate_recipe(recipe, [])
    assert "from cache" not in capsys.readouterr().out
    validate_recipe(recipe, [])
    assert "tokenized data from cache" in capsys.readouterr().out
    validate_recipe(recipe, ["data.cache=false"])
    assert "from cache" not in capsys.readouterr().out
