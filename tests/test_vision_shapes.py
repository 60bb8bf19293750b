"""The slow end-to-end check of vision-language fine-tuning: a LLaVA-style model on the real SmolLM2-135M-Instruct
(a random SigLIP tower and projector, testing/smol_vlm.py) learns to name drawn shapes (4 colours x 3 shapes,
chance 1 in 12) with LoRA on the language model plus the projector, and the merged folder answers as base + adapter.

    python -m pytest -q -m slow tests/test_vision_shapes.py -s

Measured (2 shared CPU cores, 6 epochs): held-out exact match 0% -> 97%, merged model agrees on 100%, served 100%
on 24 pictures; 510-733 s of training, 571-827 s in all (two runs, by the load). With the earlier tower (32 px,
16 patches, the last of two random encoder layers) it stalled at 58-75% on shape: testing/smol_vlm.py says why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tunesmith.data.cache import CACHE_ENV
from tunesmith.data.types import Conversation, Message

pytestmark = pytest.mark.slow
SMOLLM2 = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "smollm2-135m-instruct"
ANSWER_TOKENS = 6  # "a yellow triangle" and the end of the turn


def _prompts(rows: list[dict]) -> tuple[list[Conversation], list[str]]:
    prompts = [Conversation(tuple(Message(m["role"], m["content"]) for m in r["messages"][:-1]),
                            images=tuple(r["images"])) for r in rows]
    return prompts, [r["messages"][-1]["content"] for r in rows]


def _exact(answers: list[str], truths: list[str]) -> float:
    return sum(a == t for a, t in zip(answers, truths)) / len(truths)


def shapes_check(base_dir: Path, work: Path, vision: dict[str, bool] | None = None) -> dict[str, Any]:
    """Held-out exact match before and after LoRA + projector SFT, and the merged model's answers against
    base + adapter's; what the test asserts (and prints)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tunesmith.adapters.build import load_adapter
    from tunesmith.models.load import load_model
    from tunesmith.recipe.spec import Recipe
    from tunesmith.ship.merge import merge_run
    from tunesmith.testing.shapes import write_shapes
    from tunesmith.train.loop import train
    from tunesmith.vision.generate import greedy_answers
    from tunesmith.vision.processor import load_processor

    started = time.perf_counter()
    train_file, heldout_file = write_shapes(work / "shapes", 300, 100)
    prompts, truths = _prompts([json.loads(line) for line in heldout_file.read_text().splitlines()])
    processor = load_processor(str(base_dir))
    before = greedy_answers(load_model(str(base_dir), dtype="fp32"), processor, prompts, ANSWER_TOKENS)
    recipe = Recipe.model_validate({
        "name": "shapes", "model": str(base_dir), "method": "sft", "adapter": "lora", "output": str(work / "runs"),
        "data": {"train": str(train_file), "eval": str(heldout_file)}, "vision": vision or {"train_projector": True},
        "adapter_args": {"r": 16, "alpha": 32, "dropout": 0.0},
        "train": {"epochs": 6, "batch_size": 8, "lr": 2e-3, "max_seq_len": 128, "warmup_ratio": 0.05,
                  "log_every": 5},
    })
    trained_at = time.perf_counter()
    run = train(recipe).path
    train_seconds = time.perf_counter() - trained_at
    answers = greedy_answers(load_adapter(load_model(str(base_dir), dtype="fp32"), run / "adapter"), processor,
                             prompts, ANSWER_TOKENS)
    merged = merge_run(run).out
    merged_answers = greedy_answers(AutoModelForImageTextToText.from_pretrained(merged),
                                    AutoProcessor.from_pretrained(merged), prompts, ANSWER_TOKENS)
    return {"run": run, "heldout": heldout_file, "before": _exact(before, truths), "after": _exact(answers, truths), "answers": answers,
            "merged_answers": merged_answers, "train_seconds": train_seconds,
            "seconds": time.perf_counter() - started, "examples": list(zip(before[:3], answers[:3], truths[:3]))}


def test_lora_and_projector_sft_learns_to_name_shapes(smollm2_gguf_cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.testing.smol_vlm import smollm2_llava

    monkeypatch.setenv(CACHE_ENV, str(smollm2_gguf_cache))  # the GGUF copy made once per test run
    result = shapes_check(smollm2_llava(SMOLLM2, cache_root=smollm2_gguf_cache / "vlm"), tmp_path)
    print(f"\nheld-out exact match {result['before']:.0%} -> {result['after']:.0%} (100 rows, chance 1/12); merged "
          f"model agrees on {_exact(result['merged_answers'], result['answers']):.0%}; training "
          f"{result['train_seconds']:.0f} s, all {result['seconds']:.0f} s; (before, after, truth): {result['examples']}")
    assert result["before"] <= 0.2
    assert result["merged_answers"] == result["answers"]
    from vlm_serve_check import served_answers  # `tunesmith serve` of the run, through the openai client

    assert result["after"] >= 0.9, (f"held-out exact match {result['after']:.0%} is below the 90% target; "
                                     f"(before, after, truth): {result['examples']}")
    served, truths = served_answers(result["run"], result["heldout"], 24, ANSWER_TOKENS)
    print(f"served exact match {_exact(served, truths):.0%} on 24 held-out pictures: {served[:4]}")
    # 24 rows, not 100: a model at the 90% target errs on about 2.4 of them, so the bar allows 3 (21/24 = 87.5%)
    assert _exact(served, truths) >= 0.85, f"served answers {served} against {truths}"
