"""What a newcomer sees first: `tunesmith --version`, help that lists every choice in full, and no third-party
notice in a command's output; and the recipe reference (docs/recipe.md) showing real defaults."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tunesmith
from tunesmith.recipe.registry import EVAL_SUITES

ROOT = Path(__file__).resolve().parents[1]
DEEPSPEED_NOTICE = "Setting accelerator to CPU"


def _run(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter, as a user runs it (a narrow terminal: help must still list everything)."""
    env = {**os.environ, "COLUMNS": str(columns), "TERMINAL_WIDTH": str(columns)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_version_is_the_package_version() -> None:
    done = _run("-m", "tunesmith", "--version")
    assert done.returncode == 0, done.stderr
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert done.stdout.strip() == f"tunesmith {declared}" == f"tunesmith {tunesmith.__version__}"


def test_eval_help_lists_every_suite_in_a_narrow_terminal() -> None:
    done = _run("-m", "tunesmith", "eval", "--help")
    assert done.returncode == 0, done.stderr
    words = set(done.stdout.replace(",", " ").replace("│", " ").split())
    assert set(EVAL_SUITES) <= words, f"--suite help cut: missing {set(EVAL_SUITES) - words}"


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"]])
def test_help_carries_no_deepspeed_notice(args: list[str]) -> None:
    done = _run("-m", "tunesmith", *args)
    assert done.returncode == 0 and "Usage" in done.stdout, done.stderr
    assert DEEPSPEED_NOTICE not in done.stdout + done.stderr


def test_saving_a_model_prints_no_deepspeed_notice_but_other_warnings_show(tmp_path: Path) -> None:
    """transformers' save_pretrained imports DeepSpeed when it is installed (through accelerate's unwrap_model),
    which printed its CPU notice on stdout in every command that saves a model."""
    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (the `test` or `deepspeed` extra): its notice cannot appear")
    script = ("import logging, sys, tunesmith\n"
              "from tunesmith.testing.tiny import save_tiny\n"
              f"save_tiny('llama', {str(tmp_path / 'm')!r}, vocab_size=300)\n"
              "assert 'deepspeed' in sys.modules\n"
              "logging.getLogger('DeepSpeed').warning('a real DeepSpeed warning')\n")
    done = _run("-c", script)
    assert done.returncode == 0, done.stderr
    assert DEEPSPEED_NOTICE not in done.stdout + done.stderr
    assert "a real DeepSpeed warning" in done.stdout, "only the CPU notice is dropped"


def test_recipe_docs_show_real_defaults_and_gguf_models() -> None:
    from tunesmith.recipe.docs import render_recipe_docs

    docs = render_recipe_docs()
    assert "PydanticUndefined" not in docs
    assert "| `train.report_to` | list[str] | `[]` |" in docs
    assert "| `distributed.zero_options` | dict[str, Any] | `{}` |" in docs
    model_row = next(line for line in docs.splitlines() if line.startswith("| `model` |"))
    assert "GGUF" in model_row and "required" in model_row


BNB_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def test_bitsandbytes_hub_kernel_notice_is_dropped_but_other_warnings_show() -> None:
    """bitsandbytes, on a CPU with AVX512-BF16, tries to fetch a kernel from the hub and warns when it cannot;
    the warning is dropped on its own logger, where its other warnings still reach the user."""
    script = ("import logging, tunesmith\n"
              "log = logging.getLogger('bitsandbytes.backends.cpu.ops')\n"
              f"log.warning({BNB_NOTICE!r} + ': offline')\n"
              "log.warning('a real bitsandbytes warning')\n"
              "import bitsandbytes\n")
    done = _run("-c", script)
    assert done.returncode == 0, done.stderr
    assert BNB_NOTICE not in done.stdout + done.stderr
    assert "a real bitsandbytes warning" in done.stderr


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_command_sets_a_passive_openmp_wait_before_torch_loads(given: str | None, expected: str) -> None:
    """Spinning OpenMP threads made training 12-15x slower on a loaded machine (bench/omp_wait.py); the policy
    only counts if it is in the environment before torch loads its OpenMP runtime, and a user's own wins."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    script = "import os, sys, tunesmith.cli\nprint(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [expected, "False"]
