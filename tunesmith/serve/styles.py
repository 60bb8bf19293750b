"""Two tiny adapters that each answer in their own style, trained in seconds by tunesmith's own `train`:
what the server tests and bench/serve_load.py serve, so model selection is visible in the answers.

    from tunesmith.serve.styles import make_style_runs; make_style_runs("runs/styles")

A tiny random Llama is the base; LoRA teaches it to answer any word-list instruction with "meow meow meow"
(`cats`) or "woof woof woof" (`dogs`). Thirty steps suffice for greedy answers to start with the style.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.adapters.kinds.lora import LORA
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import train

STYLES = {"cats": "meow meow meow", "dogs": "woof woof woof"}
LR = {"prefix": 5e-2, "ia3": 5e-2}
"""Learning rates where 1e-2 moves the method too little in a few steps."""
PROMPT = "Repeat the words: red cat tree"
"""An instruction of the kind both adapters were trained on."""


def make_style_runs(root: str | Path, adapters: tuple[str, ...] = ("lora",), steps: int = 30) -> dict[str, Path]:
    """Train `cats` and `dogs` (LoRA) plus one short run per extra kind in `adapters` on one tiny base;
    returns {run name: run folder} and the base under "base"."""
    root = Path(root)
    rows = make_rows(64, BASE_SKILLS, seed=3)
    base = root / "base"
    if not (base / "config.json").is_file():
        save_tiny("llama", base, vocab_size=300)
    runs: dict[str, Path] = {"base": base}
    jobs = [(name, LORA.name, answer, steps) for name, answer in STYLES.items()]
    jobs += [(kind, kind, STYLES["cats"], steps) for kind in adapters if ADAPTER_KINDS[kind] is not LORA]
    for name, kind, answer, count in jobs:
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps({"instruction": r["instruction"], "input": "", "output": answer}) + "\n"
                                for r in rows))
        run = root / "runs" / name
        if not (run / "adapter").is_dir():
            train(_recipe(name, kind, base, data, root / "runs", count))
        runs[name] = run
    return runs


def _recipe(name: str, kind: str, base: Path, data: Path, out: Path, steps: int):
    return recipe_from_dict({
        "name": name, "model": str(base), "adapter": kind, "output": str(out),
        "data": {"train": str(data), "eval": 0.0, "template": "plain"},
        "train": {"lr": LR.get(kind, 1e-2), "max_steps": steps, "batch_size": 8, "max_seq_len": 64, "mixed_precision": "no",
                  "warmup_ratio": 0.0, "threads": 1},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": 8, "alpha": 16, "dropout": 0.0, "virtual_tokens": 4, "bottleneck_size": 8},
    }, source=f"style run {name}")
