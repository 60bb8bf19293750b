"""The GPU benchmark script (bench/gpu_throughput.py) is ready for a GPU it has not met yet.

No GPU here, so its `--dry-run` (the same code path on CPU, tiny shape, sdpa, no Liger) runs end to end in
fresh processes, and the printed tables must hold every configuration with finite numbers. The settings
the GPU run depends on (flash attention and Liger on both sides, the 8B shape, TRL's QLoRA base) are
checked on the payloads the script hands its children, because the dry run deliberately turns them off.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_throughput import device_problem, parse_args, trl_payload, tunesmith_payload

REPO = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e-?\d+)?%?x?$")


def _dry_run(tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bench.gpu_throughput", "--dry-run", "--workdir", str(tmp_path), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _table(output: str, title: str) -> list[list[str]]:
    """The rows (split on whitespace, settings dropped) of the table under `title`, up to the next blank line."""
    lines = output.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [line.split("|")[0].split() for line in lines[1:]]


def _finite(cell: str) -> bool:
    return bool(NUMBER.match(cell)) and math.isfinite(float(cell.rstrip("%x")))


def _check_tables(output: str, adapters: tuple[str, ...]) -> None:
    rows = _table(output, "results:")
    assert [(r[0], r[1]) for r in rows] == [(a, s) for a in adapters for s in ("tunesmith", "trl")], output
    for row in rows:
        assert len(row) == 12, row
        numbers = row[2:6] + row[9:]  # step time, tok/s, TFLOP/s, MFU measured, RSS, loss, run seconds
        assert all(_finite(cell) for cell in numbers), row
        assert float(row[2]) > 0 and float(row[3]) > 0 and float(row[9]) > 0, row
        assert row[6:9] == ["n/a"] * 3, row  # MFU vs H200 and GPU memory: not on a CPU
    ratios = _table(output, "ours / TRL:")
    assert [r[:2] for r in ratios] == [[a, "ours/TRL"] for a in adapters], output
    for row in ratios:
        assert all(_finite(cell) for cell in row[2:5] + row[7:]) and row[5:7] == ["n/a", "n/a"], row
    assert "nominal H200 bf16 dense: 989 TFLOP/s" in output
    assert "model: Llama, hidden 64, 2 layers" in output


@pytest.mark.slow  # about 50 CPU-seconds: the four-configuration variant below is slow too
def test_dry_run_lora_prints_every_row_with_finite_numbers(tmp_path: Path) -> None:
    _check_tables(_dry_run(tmp_path, "--only", "lora"), ("lora",))


@pytest.mark.slow
def test_dry_run_both_adapters_prints_every_row_with_finite_numbers(tmp_path: Path) -> None:
    """Both adapters: four fresh processes, ~95 CPU-seconds, so behind the slow mark."""
    _check_tables(_dry_run(tmp_path), ("lora", "qlora"))


def test_gpu_run_asks_for_flash_attention_and_liger_on_both_sides(tmp_path: Path) -> None:
    args = parse_args(["--workdir", str(tmp_path)])
    args.threads = 16
    assert args.shape["hidden"] == 4096 and args.shape["layers"] == 32 and args.shape["vocab"] == 128256
    assert (args.seq_len, args.steps, args.device) == (2048, 5, "cuda")
    inputs = {"model": "m", "chat": "c.jsonl", "tokens": "t.jsonl"}
    ours = tunesmith_payload(args, inputs, "qlora")["recipe"]
    assert ours["adapter"] == "qlora" and ours["train"]["packing"] is True
    assert ours["model_options"] == {"dtype": "bf16", "attn_implementation": "flash_attention_2", "kernels": "liger"}
    theirs = trl_payload(args, inputs, "qlora")
    assert theirs["use_cpu"] is False and theirs["adapter"] == "qlora"
    assert theirs["config"]["use_liger_kernel"] is True and theirs["config"]["packing"] is True
    assert theirs["config"]["model_init_kwargs"] == {"dtype": "bfloat16", "attn_implementation": "flash_attention_2"}
    assert theirs["config"]["max_length"] == ours["train"]["max_seq_len"] == 2048
    assert parse_args(["--layers", "4"]).shape["layers"] == 4


def test_gpu_run_without_a_gpu_says_what_to_do(tmp_path: Path) -> None:
    if device_problem(parse_args(["--dry-run"])) is not None:
        pytest.fail("the dry run must never need a GPU")
    problem = device_problem(parse_args(["--workdir", str(tmp_path)]))
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert problem is not None and "--dry-run" in problem
