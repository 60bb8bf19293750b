"""What the comparison reads from a run folder (run.json, metrics.jsonl, eval.json), through `tunesmith/runs/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith import runs
from tunesmith.runs.metrics import METRICS_FILE
from tunesmith.runs.metrics import read_metrics as read_metrics_file


def read_run(run_dir: Path) -> dict[str, Any] | None:
    """run.json (through runs/), or None when the run never started."""
    return runs.read_run(run_dir).to_json() if runs.is_run_folder(run_dir) else None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl records (train steps and evaluations), in order."""
    path = run_dir / METRICS_FILE
    return read_metrics_file(path) if path.is_file() else []


def run_finished(run_dir: Path) -> bool:
    return runs.is_run_folder(run_dir) and runs.read_run(run_dir).status == "done"


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
