"""Same chosen answer as lm-evaluation-harness on every item: the harness scores the shared MMLU and HellaSwag
files through its own templates and Hugging Face backend (bench/lm_eval_reference.py), we through our units."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench.lm_eval_reference import run_harness, write_tasks
from tunesmith.evaluate.benchmarks import RunSettings, get, locate
from tunesmith.models.load import load_model, load_tokenizer

pytest.importorskip("lm_eval", reason="lm-eval (test extra) is not installed")


def _ours(model_dir: str, data_dir: Path, suite: str, shots: int, limit: int) -> dict[str, dict[str, int]]:
    model, tokenizer = load_model(model_dir, dtype="fp32"), load_tokenizer(model_dir)
    data = get(suite).load(locate(suite, None, data_dir))
    samples = get(suite).run(model, tokenizer, data, RunSettings(limit=limit, shots=shots, batch_size=8)).samples
    return {"acc": {r["id"]: r["prediction"] for r in samples},
            "acc_norm": {r["id"]: r["prediction_norm"] for r in samples}}


def _check(model_dir: str, data_dir: Path, shots: int, limit: int) -> None:
    """`limit` items per MMLU subject and of HellaSwag, one harness run for all five tasks."""
    with tempfile.TemporaryDirectory() as folder:
        harness = run_harness(model_dir, Path(folder), write_tasks(Path(folder), data_dir), shots=shots,
                              limit=limit, batch_size=8)
    ours = _ours(model_dir, data_dir, "mmlu", shots, limit)
    assert len(ours["acc"]) == 4 * limit and harness.acc["mmlu"] == ours["acc"]
    ours = _ours(model_dir, data_dir, "hellaswag", shots, limit)
    assert len(ours["acc"]) == limit
    assert harness.acc["hellaswag"] == ours["acc"]
    assert harness.acc_norm["hellaswag"] == ours["acc_norm"]


@pytest.mark.slow
def test_same_answers_as_the_harness_on_stories260k(stories260k, shared_data):
    _check(str(stories260k), shared_data, shots=1, limit=8)


@pytest.mark.slow
def test_same_answers_as_the_harness_on_smollm2(shared_data):
    from bench.smollm2 import smollm2_folder

    try:
        folder = smollm2_folder()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    _check(str(folder), shared_data, shots=5, limit=12)
