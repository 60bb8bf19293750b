"""Tiny real runs for the dashboard's tests: a random-init Llama, alpaca rows, recipes that train in seconds;
and a test client that calls the dashboard the way its own page does (a loopback Host, JSON bodies)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny


def tiny_model_and_data(root: Path) -> tuple[Path, Path]:
    """A tiny random Llama folder (with a plain chat template's worth of vocabulary) and 120 alpaca rows."""
    rows = make_rows(120, BASE_SKILLS, seed=2)
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [f"{r['instruction']}\n{r['output']}" for r in rows[:60]] + ["User: Assistant: "]
    return save_tiny("llama", root / "base", vocab_size=300, texts=texts), data


def tiny_recipe(name: str, model: Path, data: Path, output: Path, **train: Any) -> dict[str, Any]:
    """A recipe mapping for a LoRA SFT run of a few steps, one thread, fp32."""
    return {
        "name": name, "model": str(model), "output": str(output),
        "data": {"train": str(data), "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-3, "max_steps": 4, "batch_size": 4, "max_seq_len": 64, "eval_every": 2,
                  "mixed_precision": "no", "threads": 1, **train},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": 4, "alpha": 8},
    }


LOCAL = "http://127.0.0.1:7860"
"""The base URL test clients use: a Host the dashboard answers to (TestClient's default, `testserver`, is not)."""


def local_client(app: FastAPI, **kwargs: Any) -> TestClient:
    """A TestClient that reaches `app` as a browser on this machine would (Host 127.0.0.1:7860)."""
    return TestClient(app, base_url=LOCAL, **kwargs)

BROWSER_TOKEN = "browser-test-token"
"""The token of the dashboards the browser tests open (through `headless.open_with_token`)."""
BEARER = {"Authorization": f"Bearer {BROWSER_TOKEN}"}
"""What scripts (httpx) beside the browser send instead of the page's cookie."""
