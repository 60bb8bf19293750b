"""A tiny LLaVA run for the shipping tests (serve, eval, export): a random tiny LLaVA folder, shape chats with
a held-out split, and a few steps of LoRA + projector SFT (seconds on a CPU)."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.testing.shapes import shape_rows
from tunesmith.testing.vlm import save_tiny_vlm


def tiny_llava_run(root: Path, rows: int = 12) -> dict[str, Path]:
    """{"base": the model folder, "run": the trained run folder, "data": its data file} under `root`."""
    from tunesmith.recipe.spec import Recipe
    from tunesmith.train.loop import train

    folder = save_tiny_vlm("llava", root / "tiny-llava", seed=3)
    data = root / "shapes.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in shape_rows(rows, root / "images")))
    recipe = Recipe.model_validate({
        "name": "vlm", "model": str(folder), "method": "sft", "adapter": "lora", "output": str(root / "runs"),
        "data": {"train": str(data), "eval": 0.5}, "adapter_args": {"r": 4, "alpha": 8},
        "vision": {"train_projector": True},
        "train": {"max_steps": 3, "batch_size": 2, "max_seq_len": 128, "lr": 5e-2, "threads": 2}})
    return {"base": folder, "run": train(recipe).path, "data": data}
