"""The slow end-to-end check of vision-language fine-tuning: a LLaVA-style model on the real SmolLM2-135M-Instruct
(a random SigLIP tower and projector, testing/smol_vlm.py) learns to name drawn shapes (4 colours x 3 shapes,
chance 1 in 12) with LoRA on the language model plus the projector, and the merged folder answers as base + adapter.

    python -m pytest -q -m slow tests/test_vision_shapes.py -s
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunesmith.data.cache import CACHE_ENV
from tunesmith.data.types import Conversation, Message

pytestmark = pytest.mark.slow
SMOLLM2 = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "smollm2-135m-instruct"


def _prompts(rows: list[dict]) -> tuple[list[Conversation], list[str]]:
    prompts = [Conversation((Message("user", r["messages"][0]["content"]),), images=tuple(r["images"])) for r in rows]
    return prompts, [r["messages"][1]["content"] for r in rows]


def _exact(answers: list[str], truths: list[str]) -> float:
    return sum(a == t for a, t in zip(answers, truths)) / len(truths)


def test_lora_and_projector_sft_learns_to_name_shapes(smollm2_gguf_cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tunesmith.adapters.build import load_adapter
    from tunesmith.models.load import load_model
    from tunesmith.recipe.spec import Recipe
    from tunesmith.ship.merge import merge_run
    from tunesmith.testing.shapes import write_shapes
    from tunesmith.testing.smol_vlm import smollm2_llava
    from tunesmith.train.loop import train
    from tunesmith.vision.generate import greedy_answers
    from tunesmith.vision.processor import load_processor

    monkeypatch.setenv(CACHE_ENV, str(smollm2_gguf_cache))  # the GGUF copy made once per test run
    started = time.perf_counter()
    base_dir = smollm2_llava(SMOLLM2, cache_root=smollm2_gguf_cache / "vlm")
    train_file, heldout_file = write_shapes(tmp_path / "shapes", 300, 100)
    prompts, truths = _prompts([json.loads(line) for line in heldout_file.read_text().splitlines()])
    processor = load_processor(str(base_dir))
    before = _exact(greedy_answers(load_model(str(base_dir), dtype="fp32"), processor, prompts, 8), truths)
    recipe = Recipe.model_validate({
        "name": "shapes", "model": str(base_dir), "method": "sft", "adapter": "lora", "output": str(tmp_path / "runs"),
        "data": {"train": str(train_file), "eval": str(heldout_file)}, "vision": {"train_projector": True},
        "adapter_args": {"r": 16, "alpha": 32, "dropout": 0.0},
        "train": {"epochs": 3, "batch_size": 8, "lr": 1e-3, "max_seq_len": 128, "warmup_ratio": 0.05,
                  "eval_every": 0, "log_every": 5},
    })
    run = train(recipe).path
    tuned = load_adapter(load_model(str(base_dir), dtype="fp32"), run / "adapter")
    answers = greedy_answers(tuned, processor, prompts, 8)
    after = _exact(answers, truths)
    merged = merge_run(run).out
    reloaded = AutoModelForImageTextToText.from_pretrained(merged)
    merged_answers = greedy_answers(reloaded, AutoProcessor.from_pretrained(merged), prompts, 8)
    print(f"\nheld-out exact match {before:.2%} -> {after:.2%} ({len(truths)} rows; chance 1/12); merged model "
          f"agrees on {_exact(merged_answers, answers):.2%}; {time.perf_counter() - started:.0f} s; e.g. {answers[:4]}")
    assert before <= 0.2
    assert after >= 0.9
    assert merged_answers == answers
