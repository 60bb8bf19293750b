"""Shared test setup: offline hub, paths to the real fixtures beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"
STORIES = SHARED / "fixtures" / "stories260k"
DATA = SHARED / "data"


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
