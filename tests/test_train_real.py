"""On the real pretrained stories260K Llama: SFT, CPT and full fine-tuning with replay do what they claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.train.loop import train


def run(stories260k: Path, shared_data: Path, out: Path, **spec: object) -> tuple[Path, dict]:
    data = spec.pop("data")
    recipe = recipe_from_dict({
        "name": "real", "model": str(stories260k), "output": str(out), "data": data,
        "train": {"max_steps": 25, "batch_size": 4, "max_seq_len": 128, "mixed_precision": "no", **spec.pop("train", {})},
        "model_options": {"dtype": "fp32"}, **spec,
    })
    path = train(recipe).path
    return path, json.loads((path / "run.json").read_text())


def test_lora_sft_on_alpaca_lowers_held_out_loss(stories260k: Path, shared_data: Path, tmp_path: Path) -> None:
    data = {"train": str(shared_data / "alpaca_1k.jsonl"), "max_rows": 300, "eval": 0.1, "template": "plain"}
    path, info = run(stories260k, shared_data, tmp_path, data=data, train={"lr": 3e-3})
    assert info["data"]["format"] == "alpaca"
    assert info["final"]["eval_loss"] < info["final"]["eval_loss_before"] - 0.1
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(stories260k), path / "adapter")


def test_lora_cpt_on_tinystories_lowers_held_out_loss(stories260k: Path, shared_data: Path, tmp_path: Path) -> None:
    data = {"train": str(shared_data / "tinystories_train_first1000.txt"), "max_rows": 600, "eval": 0.1}
    path, info = run(stories260k, shared_data, tmp_path, method="cpt", data=data, train={"lr": 3e-3})
    assert info["data"]["format"] == "text"
    assert info["final"]["eval_loss"] < info["final"]["eval_loss_before"]


def test_full_fine_tuning_with_replay_reports_the_share(stories260k: Path, shared_data: Path, tmp_path: Path) -> None:
    data = {
        "train": str(shared_data / "alpaca_1k.jsonl"), "max_rows": 200, "eval": 0.1, "template": "plain",
        "replay": {"train": str(shared_data / "tinystories_train_first1000.txt"), "ratio": 0.2},
    }
    path, info = run(stories260k, shared_data, tmp_path, adapter="full", data=data, train={"max_steps": 10})
    assert info["data"]["replay"]["share"] == pytest.approx(0.2, abs=0.01)
    assert info["final"]["eval_loss"] < info["final"]["eval_loss_before"]
    AutoModelForCausalLM.from_pretrained(path / "model")
