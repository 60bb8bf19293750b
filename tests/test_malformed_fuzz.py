"""Random bytes, encodings and JSON shapes thrown at the data loaders and the recipe parser: every input
either loads or ends in one UserError (DataError for data rows); never a traceback from deeper down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunesmith.data.formats import parse_rows
from tunesmith.data.loading import load_rows
from tunesmith.errors import UserError
from tunesmith.recipe.spec import load_recipe, recipe_from_dict

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SUFFIXES = [".jsonl", ".json", ".csv", ".txt"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
row_keys = st.sampled_from(["instruction", "input", "output", "messages", "conversations", "role", "content",
                            "from", "value", "prompt", "completion", "text", "chosen", "rejected", "x"])
row_shapes = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(row_keys, inner, max_size=4),
    max_leaves=15,
)
SPECIAL = [
    b'{"instruction": "\\ud800", "output": "x"}\n',  # a lone surrogate escape
    b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser's recursion
    b'{"instruction": ' + b"[" * 50_000 + b"]" * 50_000 + b', "output": "x"}\n',
    b"\x00\x01\x02\xff\xfe",
    "\ufeff{\"text\": \"bom\"}\n".encode("utf-16"),
]


def load_and_parse(path: Path) -> None:
    try:
        parse_rows(load_rows(path))
    except UserError:
        pass


def read_recipe(path: Path) -> None:
    try:
        load_recipe(path)
    except UserError:
        pass


@FUZZ
@given(data=st.binary(max_size=400), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes_in_a_data_file(tmp_path_factory, data: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("bytes") / f"rows{suffix}"
    path.write_bytes(data)
    load_and_parse(path)


@FUZZ
@given(rows=st.lists(row_shapes, min_size=1, max_size=5), suffix=st.sampled_from([".jsonl", ".json"]),
       encoding=st.sampled_from(ENCODINGS))
def test_random_json_shapes_and_encodings_in_a_data_file(tmp_path_factory, rows, suffix, encoding) -> None:
    text = ("\n".join(json.dumps(r) for r in rows) if suffix == ".jsonl" else json.dumps(rows)) + "\n"
    path = tmp_path_factory.mktemp("shapes") / f"rows{suffix}"
    try:
        path.write_bytes(text.encode(encoding))
    except UnicodeEncodeError:
        return
    load_and_parse(path)


@pytest.mark.parametrize("data", SPECIAL)
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_special_inputs_in_a_data_file(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"rows{suffix}"
    path.write_bytes(data)
    with pytest.raises(UserError):
        parse_rows(load_rows(path))


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_as_a_recipe(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("recipe") / "r.yaml"
    path.write_bytes(data)
    read_recipe(path)


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(["name", "model", "method", "adapter", "data", "train", "output",
                                            "model_options", "adapter_args", "eval", "dpo", "grpo", "x"]),
                           json_values, max_size=6),
       encoding=st.sampled_from(ENCODINGS))
def test_random_shapes_and_encodings_as_a_recipe(tmp_path_factory, raw, encoding) -> None:
    path = tmp_path_factory.mktemp("recipe") / "r.yaml"
    try:
        path.write_bytes(yaml.safe_dump(raw, allow_unicode=True).encode(encoding))
    except (UnicodeEncodeError, yaml.YAMLError):
        return
    read_recipe(path)
    try:
        recipe_from_dict(raw)
    except UserError:
        pass


@pytest.mark.parametrize("data", [
    b"name: a\nname: b\nmodel: m\ndata: {train: x.jsonl}\n",  # duplicate key
    "name: r\nmodel: m\ndata: {train: x.jsonl}\n".encode("utf-16"),
    b"[" * 100_000,
    b"a: " + b"[" * 20_000 + b"]" * 20_000,
    b"\x89PNG\r\n\x1a\n\x00\x00",
])
def test_special_inputs_as_a_recipe(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(data)
    with pytest.raises(UserError):
        load_recipe(path)
