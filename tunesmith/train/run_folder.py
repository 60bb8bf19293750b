"""The run folder `output/name/`: it describes itself, so `merge`, `eval` and `serve` need only its path.

Layout: run.json (resolved recipe, base model, data hashes, versions, times, final metrics),
metrics.jsonl, checkpoints/step-N/, adapter/ (PEFT) or model/ (HF), loss.png.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from tunesmith import __version__
from tunesmith.bottleneck import save_bottleneck
from tunesmith.data.pipeline import PreparedData
from tunesmith.errors import UserError
from tunesmith.recipe import Recipe
from tunesmith.train.monitor import MetricsLog, plot_losses
from tunesmith.train.reward_model import heads_set_aside


def versions() -> dict[str, str]:
    import accelerate
    import peft
    import transformers

    return {
        "tunesmith": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "accelerate": accelerate.__version__, "python": platform.python_version(),
    }


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def prepare(self, *, resume: bool, overwrite: bool = False) -> None:
        """Create the folder; refuse to mix a new run into an old one unless told what to do."""
        if self.path.exists() and any(self.path.iterdir()) and not resume:
            if not overwrite:
                raise UserError(
                    f"run folder {self.path} already holds a run; pass --resume to continue it, "
                    f"--overwrite to replace it, or choose another name (name=...)"
                )
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_run_json(self, recipe: Recipe, data: PreparedData, state: dict[str, Any], status: str) -> Path:
        resolved = recipe.model_dump(mode="json")
        resolved["train"]["lr"] = recipe.lr
        model_path = Path(recipe.model)
        record = {
            "name": recipe.name,
            "status": status,
            "recipe": resolved,
            "base_model": str(model_path.resolve()) if model_path.exists() else recipe.model,
            "method": recipe.method,
            "adapter": recipe.adapter,
            "output": self.weights_dir(recipe.adapter).name,
            "data": data.summary(),
            "versions": versions(),
            "started": self.started,
            "ended": datetime.now(timezone.utc).isoformat(timespec="seconds") if status != "running" else None,
            "state": {k: v for k, v in state.items() if k != "final"},
            "final": state.get("final"),
        }
        _write_atomic(self.path / "run.json", json.dumps(record, indent=2, default=str))
        return self.path / "run.json"

    def weights_dir(self, adapter: str) -> Path:
        return self.path / ("model" if adapter == "full" else "adapter")

    def save_weights(self, model: torch.nn.Module, tokenizer: Any, adapter: str) -> Path:
        """Standard PEFT adapter folder or HF model folder, with the tokenizer and its chat template."""
        final = self.weights_dir(adapter)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=self.path))
        with heads_set_aside(model, tmp):  # a reward/value head goes to its own file (reward_model.py)
            if adapter == "bottleneck":  # our own adapter, not PEFT: its documented two files (bottleneck.py)
                save_bottleneck(model, tmp)
            else:
                model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final

    def plot(self, metrics: MetricsLog) -> Path:
        return plot_losses(metrics.records, self.path / "loss.png", title=self.path.name)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
