"""`tunesmith demo`: the whole job, offline, about a minute on 2 idle CPU cores (README gives the measured times).

It needs no download and no file from anywhere. It writes small instruction datasets of word-list skills,
builds a tiny random Llama with a byte-level BPE tokenizer trained on that data, and then, through the same
`train` function the CLI uses:

1. makes a base model: full fine-tuning teaches the random model two skills (repeat, first word);
2. adapts it: LoRA teaches the base a skill it lacks (reverse the words), the job tunesmith exists for.

It prints held-out loss before and after the LoRA run and the answers of the base and the tuned model to
fresh instructions.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from peft import PeftModel
from rich.console import Console

from tunesmith.data.tokenize import tokenize_prompt
from tunesmith.data.types import Message
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import train

console = Console()

WORDS = (
    "red blue green cat dog bird tree sun moon star fish boat rain snow milk cake book lamp door hat "
    "car ship cup pen box key ring bell rock leaf"
).split()
SKILLS = {
    "Repeat the words": lambda words: words,
    "Say the first word": lambda words: words[:1],
    "Reverse the words": lambda words: words[::-1],
}
BASE_SKILLS = ("Repeat the words", "Say the first word")
PRETRAINING_NOTE = (
    "[dim]This step trains random weights from scratch, so it is pre-training, not fine-tuning: the advice for "
    "full fine-tuning (lr ~2e-5, replay of general data against forgetting) protects skills a random model does "
    "not have yet, so it uses lr 3e-3 and no replay. Step 2 is the fine-tuning: LoRA, checked by the usual advice.[/]"
)
NEW_SKILL = "Reverse the words"


def make_rows(n: int, skills: tuple[str, ...], seed: int = 0) -> list[dict[str, str]]:
    """Alpaca rows for `skills` over random word lists; the answers follow rules, so they generalise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(3, 6))
        skill = rng.choice(skills)
        answer = " ".join(SKILLS[skill](words))
        rows.append({"instruction": f"{skill}: {' '.join(words)}", "input": "", "output": answer})
    return rows


def _write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_demo(out: Path) -> Path:
    out = Path(out)
    tiny_dir, data_dir = out / "demo-tiny", out / "demo-data"
    for stale in (tiny_dir, data_dir, out / "demo-base", out / "demo-lora"):
        shutil.rmtree(stale, ignore_errors=True)
    data_dir.mkdir(parents=True)
    base_rows = make_rows(6000, BASE_SKILLS, seed=1)
    new_rows = make_rows(4000, (NEW_SKILL,), seed=2)
    base_file = _write_rows(data_dir / "base_skills.jsonl", base_rows)
    new_file = _write_rows(data_dir / "reverse.jsonl", new_rows)
    corpus = [f"{r['instruction']}\n{r['output']}" for r in base_rows[:400] + new_rows[:100]] + ["User: Assistant: "]
    save_tiny("llama", tiny_dir, vocab_size=320, texts=corpus, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=172)
    console.rule("[bold]1/2 base model[/]: full fine-tuning of a random tiny Llama on two skills")
    console.print(PRETRAINING_NOTE)
    base = train(_recipe("demo-base", tiny_dir, base_file, out, adapter="full", lr=3e-3, epochs=2), advice=False)
    base_model = base.path / "model"
    console.rule(f"[bold]2/2 LoRA[/]: teach the base a new skill ({NEW_SKILL.lower()})")
    tuned = train(_recipe("demo-lora", base_model, new_file, out, adapter="lora", lr=3e-3, epochs=3))
    _show_answers(base_model, tuned.path / "adapter", make_rows(3, (NEW_SKILL,), seed=99))
    return tuned.path


def _recipe(name: str, model: Path, data: Path, out: Path, adapter: str, lr: float, epochs: int):
    return recipe_from_dict({
        "name": name, "model": str(model), "method": "sft", "adapter": adapter, "output": str(out),
        "data": {"train": str(data), "eval": 0.05, "template": "plain"},
        "train": {"lr": lr, "epochs": epochs, "batch_size": 8, "max_seq_len": 128, "eval_every": 50,
                  "save_every": 200, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": 16, "alpha": 32, "dropout": 0.0},
    }, source="demo recipe")


def _show_answers(base_dir: Path, adapter_dir: Path, rows: list[dict[str, str]]) -> None:
    """Greedy answers of the base and the tuned model to a few fresh rows (new word lists)."""
    tokenizer = load_tokenizer(str(adapter_dir))
    base = load_model(str(base_dir), dtype="fp32")
    tuned = PeftModel.from_pretrained(load_model(str(base_dir), dtype="fp32"), str(adapter_dir))
    for row in rows:
        ids = torch.tensor([tokenize_prompt(tokenizer, [Message("user", row["instruction"])])])
        answers = []
        for model in (base, tuned):
            with torch.no_grad():
                output = model.generate(ids, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                        eos_token_id=tokenizer.eos_token_id)
            answers.append(tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True).strip())
        console.print(f"  {row['instruction']!r}\n    expected {row['output']!r}\n    base     {answers[0]!r}\n    tuned    {answers[1]!r}")
