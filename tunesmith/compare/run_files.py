"""Reading a run folder's files (run.json, metrics.jsonl, eval.json) for the comparison, in one place, so
that the `tunesmith/runs/` package can take this over without hunting through the comparison code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """run.json, or None when the run never started."""
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records (train steps and evaluations), in order."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_eval(folder: Path) -> dict[str, Any] | None:
    """eval.json written by `tunesmith eval` into a run folder (or another output folder)."""
    path = folder / "eval.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_finished(run_dir: Path) -> bool:
    run = read_run(run_dir)
    return run is not None and run.get("status") == "done"


def train_tokens_per_second(records: list[dict[str, Any]]) -> float | None:
    """Real tokens over the summed step times of the train records (model loading and evaluation excluded)."""
    steps = [r for r in records if "tokens_per_s" in r and r.get("tokens_per_s")]
    seconds, tokens, previous = 0.0, 0, 0
    for record in steps:
        step_tokens = record["tokens"] - previous
        previous = record["tokens"]
        seconds += step_tokens / record["tokens_per_s"]
        tokens += step_tokens
    return tokens / seconds if seconds > 0 else None
