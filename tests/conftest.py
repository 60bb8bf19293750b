"""Shared test setup: offline hub, a throwaway data cache, paths to the real fixtures beside the checkout."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the `tunesmith` command sets it (cli.py), before torch loads

import pytest  # noqa: E402

from tunesmith.data.cache import CACHE_ENV  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"
STORIES = SHARED / "fixtures" / "stories260k"
SMOLLM2 = SHARED / "fixtures" / "smollm2-135m-instruct"
DATA = SHARED / "data"
_TEST_NUMBER = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _session_data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The data cache of the whole run, in pytest's temporary folder: tests never read or fill ~/.cache.

    Session scope, so it is in force before any module- or session-scoped fixture prepares data.
    """
    root = tmp_path_factory.mktemp("tunesmith-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(root))
        yield root


@pytest.fixture(autouse=True)
def _test_data_cache(_session_data_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own cache folder (created on first write), so no test passes on another's cached data."""
    monkeypatch.setenv(CACHE_ENV, str(_session_data_cache / f"test-{next(_TEST_NUMBER)}"))


@pytest.fixture
def shared_data() -> Path:
    """The real datasets in ../shared/data; skips when the checkout has no shared folder beside it."""
    if not DATA.is_dir():
        pytest.skip(f"real datasets not found at {DATA} (the shared folder beside the checkout)")
    return DATA


@pytest.fixture
def stories260k() -> Path:
    """The real pretrained stories260K Llama; skips when absent."""
    if not (STORIES / "config.json").is_file():
        pytest.skip(f"real model fixture not found at {STORIES} (the shared folder beside the checkout)")
    return STORIES


@pytest.fixture(scope="session")
def smollm2_gguf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache root holding the SmolLM2 GGUF fixture converted to a Hugging Face folder: converted once per
    test run (~20-100 s), not per test. Point TUNESMITH_CACHE here to make `model: <the .gguf>` a cache hit."""
    from tunesmith.gguf.source import converted_folder, find_gguf

    gguf_file = find_gguf(str(SMOLLM2)) if SMOLLM2.is_dir() else None
    if gguf_file is None:
        pytest.skip(f"real chat model fixture (a .gguf file) not found in {SMOLLM2} (the shared folder beside the checkout)")
    root = tmp_path_factory.mktemp("tunesmith-cache-smollm2")
    converted_folder(gguf_file, root / "gguf")
    return root


@pytest.fixture
def smollm2(smollm2_gguf_cache: Path) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder (float32, de-quantized from the shared GGUF file)."""
    (folder,) = (p for p in (smollm2_gguf_cache / "gguf").iterdir() if not p.name.startswith("."))
    return folder


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random LLaVA and a few-step LoRA + projector run over it (tests/vlm_run.py), trained once per
    test run for the shipping tests (serve, eval, export, validate, the dashboard's chat)."""
    from vlm_run import tiny_llava_run

    return tiny_llava_run(tmp_path_factory.mktemp("tiny-llava-run"))
