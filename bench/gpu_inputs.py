"""Inputs of `bench.gpu_throughput`: the Llama-3-8B-shaped model (random weights from its config), the
training data, and tunesmith's tokenization of that data for TRL.

Why random weights: throughput and memory depend on the shapes, not on the values, and nothing may be
downloaded at run time. Why synthetic data by default: the device machine has only the repository, not
`../shared/data`; seeded log-normal sample lengths keep the skew that makes packing matter, and the same
seed gives the same tokens everywhere. `--data-dir` switches to the real Alpaca + ShareGPT files instead.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from bench.common import write_chat_data
from tunesmith.data.pipeline import prepare_data
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.tiny import tiny_config, tiny_tokenizer

LLAMA3_8B: dict[str, int] = {"hidden": 4096, "layers": 32, "heads": 32, "kv_heads": 8, "intermediate": 14336,
                             "vocab": 128256, "tokenizer_vocab": 8000}
"""Llama-3-8B's config. The embedding and head keep the full 128,256 rows (the head's cost is part of the
step); the tokenizer is a smaller BPE trained on the data, so its ids all fall inside that vocabulary."""

DRY_SHAPE: dict[str, int] = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 128,
                             "vocab": 2048, "tokenizer_vocab": 1024}
"""The `--dry-run` model: the same code path, small enough for a few seconds on one CPU core."""

REAL_DATA = ("alpaca_1k.jsonl", "sharegpt_glaive_toolcall_300.jsonl")


def synthetic_chat(out: Path, samples: int, seq_len: int, seed: int = 0) -> tuple[Path, list[str]]:
    """Write `samples` one-turn conversations of pseudo-words as OpenAI-messages JSONL; returns the file and
    every message text. Lengths are log-normal (median about seq_len/8 words, a long tail cut at seq_len
    words), the skew of real instruction data, so packed rows hold several samples of unequal length."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lexicon = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(4000)]

    def text(median: float) -> str:
        words = min(seq_len, max(3, int(rng.lognormvariate(math.log(median), 0.8))))
        return " ".join(rng.choice(lexicon) for _ in range(words)) + "."

    rows, texts = [], []
    for _ in range(samples):
        prompt, answer = text(seq_len / 40), text(seq_len / 10)
        rows.append(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": answer}]}))
        texts += [prompt, answer]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    return out, texts


def training_chat(workdir: Path, data_dir: str | None, samples: int, seq_len: int) -> tuple[Path, list[str], str]:
    """The chat file both systems train on, its texts (for the tokenizer), and a line saying what it is."""
    out = workdir / "data" / "chat.jsonl"
    if data_dir:
        chat, texts = write_chat_data([Path(data_dir) / name for name in REAL_DATA], out)
        return chat, texts, f"real: {', '.join(REAL_DATA)} from {data_dir}"
    chat, texts = synthetic_chat(out, samples, seq_len)
    return chat, texts, f"synthetic: {samples} seeded one-turn conversations, log-normal lengths"


def save_model(out: Path, shape: dict[str, int], texts: list[str], seq_len: int, device: str) -> Path:
    """Write the model folder (bf16 random weights, config, tokenizer) unless an identical one is there.

    The weights are initialised on `device` (seconds on a GPU, minutes for 8B on CPU) and written once;
    a `.complete` marker holding the shape makes a rerun in the same --workdir skip this step.
    """
    marker = out / ".complete"
    key = json.dumps({**shape, "seq_len": seq_len}, sort_keys=True)
    if marker.is_file() and marker.read_text() == key:
        return out
    tokenizer = tiny_tokenizer(texts, shape["tokenizer_vocab"])
    tokenizer.model_max_length = seq_len
    config = tiny_config("llama", shape["vocab"], hidden=shape["hidden"], layers=shape["layers"], heads=shape["heads"],
                         kv_heads=shape["kv_heads"], intermediate=shape["intermediate"], max_positions=seq_len,
                         rms_norm_eps=1e-5, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    marker.write_text(key)
    return out


def tokens_for_trl(model: Path, chat: Path, seq_len: int, out: Path) -> dict[str, Any]:
    """tunesmith's tokenization of the train split as `input_ids`/`labels` JSONL, so TRL trains on exactly
    the tokens tunesmith does; returns the file and length facts."""
    recipe = recipe_from_dict({"name": "tokenize", "model": str(model), "data": {"train": str(chat), "template": "plain"},
                               "train": {"max_seq_len": seq_len}})
    samples = prepare_data(recipe, load_tokenizer(str(model))).train
    out.write_text("".join(json.dumps({"input_ids": s.input_ids, "labels": s.labels}) + "\n" for s in samples))
    lengths = sorted(len(s) for s in samples)
    return {"tokens": str(out), "samples": len(samples), "total": sum(lengths), "median": lengths[len(lengths) // 2],
            "cut": sum(n == seq_len for n in lengths)}
