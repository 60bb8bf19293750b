"""The malformed-input corpus through `tunesmith train`, not only `validate`: every broken data file or
recipe value ends in one clear error (exit 2, no traceback) or trains; nothing escapes as an exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.testing.tiny import save_tiny

GOOD = [{"instruction": f"say {i}", "output": f"{i} said"} for i in range(12)]
JSONL = "\n".join(json.dumps(r) for r in GOOD) + "\n"

DATA_CASES: dict[str, bytes] = {
    "empty file": b"",
    "only whitespace": b"\n\n   \n",
    "truncated JSON line": (JSONL + '{"instruction": "cut').encode(),
    "a bare string row": (JSONL + '"just text"\n').encode(),
    "a list row": (JSONL + "[1, 2, 3]\n").encode(),
    "instruction is a list": (JSONL + '{"instruction": ["a"], "output": "b"}\n').encode(),
    "output is null": (JSONL + '{"instruction": "a", "output": null}\n').encode(),
    "output is empty": (JSONL + '{"instruction": "a", "output": ""}\n').encode(),
    "messages not a list": b'{"messages": "hi"}\n' * 3,
    "message without content": b'{"messages": [{"role": "user"}]}\n' * 3,
    "unknown role": b'{"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}\n' * 3,
    "no assistant turn": b'{"messages": [{"role": "user", "content": "x"}]}\n' * 3,
    "conversations value missing": b'{"conversations": [{"from": "human"}, {"from": "gpt", "value": "y"}]}\n' * 3,
    "mixed formats": (JSONL + '{"messages": [{"role": "user", "content": "x"}]}\n').encode(),
    "NaN literal": (JSONL + '{"instruction": NaN, "output": "x"}\n').encode(),
    "lone surrogate": (JSONL + '{"instruction": "\\ud800", "output": "x"}\n').encode(),
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "binary garbage": b"\x00\x01\x02\xff\xfe" * 40,
    "latin-1 bytes": (JSONL + '{"instruction": "caf\xe9", "output": "x"}\n').encode("latin-1"),
    "utf-16 with BOM": JSONL.encode("utf-16"),
    "JSON object, not rows": b'{"instruction": "a"}',
    "number rows": b"1\n2\n3\n",
}

RECIPE_CASES: dict[str, tuple[str, object]] = {
    "lr is text": ("train.lr", "fast"),
    "lr is infinite": ("train.lr", float("inf")),
    "batch size zero": ("train.batch_size", 0),
    "negative max_seq_len": ("train.max_seq_len", -5),
    "epochs is a list": ("train.epochs", [1, 2]),
    "unknown adapter": ("adapter", "lora2"),
    "unknown method": ("method", "sftt"),
    "unknown format": ("data.format", "alpacca"),
    "eval fraction 1.5": ("data.eval", 1.5),
    "adapter rank zero": ("adapter_args.r", 0),
    "data train missing file": ("data.train", "nowhere.jsonl"),
    "model is a file of text": ("model", "__text_file__"),
    "model folder missing": ("model", "/nonexistent/model"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "model", texts=[JSONL])


def _recipe(tmp: Path, model: Path, data: Path, changes: dict[str, object]) -> Path:
    recipe = {"name": "corpus", "model": str(model), "output": str(tmp / "runs"),
              "data": {"train": str(data), "eval": None, "template": "plain"},
              "train": {"max_steps": 1, "batch_size": 2, "max_seq_len": 32, "mixed_precision": "no", "threads": 1},
              "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 2, "alpha": 4}}
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        block = recipe
        for parent in parents:
            block = block.setdefault(parent, {})
        block[key] = value
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _train_without_traceback(recipe: Path) -> int:
    result = CliRunner().invoke(app, ["train", str(recipe)])
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    assert escaped is None, f"traceback: {type(escaped).__name__}: {escaped}\n{result.output[-1500:]}"
    assert result.exit_code in (0, 2), result.output[-1500:]
    return result.exit_code


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
@pytest.mark.parametrize("case", list(DATA_CASES))
def test_malformed_data_through_train(tmp_path: Path, tiny: Path, case: str, on_bad_row: str) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_bytes(DATA_CASES[case])
    code = _train_without_traceback(_recipe(tmp_path, tiny, data, {"data.on_bad_row": on_bad_row}))
    if on_bad_row == "error" and case not in ("utf-16 with BOM",):
        assert code == 2, f"{case}: a malformed file trained without a word"


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_malformed_recipe_values_through_train(tmp_path: Path, tiny: Path, case: str) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(JSONL)
    key, value = RECIPE_CASES[case]
    if value == "__text_file__":
        value = str(data)
    assert _train_without_traceback(_recipe(tmp_path, tiny, data, {key: value})) == 2
