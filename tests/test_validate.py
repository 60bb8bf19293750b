"""`tunesmith validate` and `tunesmith data stats` on the real files, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

EXPECTED_FORMATS = {
    "sft-lora-alpaca.yaml": "alpaca",
    "sft-lora-sharegpt.yaml": "sharegpt",
    "cpt-lora-tinystories.yaml": "text",
    "dpo-lora-pairs.yaml": "preference",
    "dpo-lora-hh.yaml": "preference",
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunesmith", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**__import__("os").environ, "COLUMNS": "160"})


@pytest.mark.parametrize(("recipe", "fmt"), sorted(EXPECTED_FORMATS.items()))
def test_validate_reports_on_each_real_file(recipe: str, fmt: str, stories260k: Path, shared_data: Path) -> None:
    result = cli("validate", f"recipes/{recipe}", "data.max_rows=120")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert f"{fmt} (detected)" in out
    for row in ("rows", "bad rows skipped", "truncated samples", "samples with no trained token",
                "tokens trained / total", "length p50 / p90 / max", "exact duplicates", "eval rows also in train"):
        assert row in out, row
    assert "length histogram" in out and "example" in out


def test_hh_file_reports_its_one_bad_row(stories260k: Path, shared_data: Path) -> None:
    result = cli("validate", "recipes/dpo-lora-hh.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "preference_hh_harmless_base_test_500.jsonl:87" in result.stdout + result.stderr


def test_data_stats_on_a_file_alone(stories260k: Path, shared_data: Path) -> None:
    result = cli("data", "stats", str(shared_data / "gsm8k_test.jsonl"), "--model", str(stories260k))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "prompt (detected)" in result.stdout and "1,319" in result.stdout


def test_user_mistakes_print_one_message_without_traceback(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nmodel: m\ndata: {train: t.jsonl}\ntrain: {lerning_rate: 1e-4}\n")
    result = cli("validate", str(recipe))
    assert result.returncode == 2
    assert "did you mean 'train.lr'?" in result.stderr and "Traceback" not in result.stderr


def test_malformed_row_names_file_and_line(tmp_path: Path, stories260k: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": ""}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: x\nmodel: {stories260k}\ndata: {{train: {data}, template: plain}}\ntrain: {{max_seq_len: 128}}\n")
    result = cli("validate", str(recipe))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{data}:2:" in result.stderr.replace("\n", "")
