"""Creating and writing a run folder `output/name/` while it trains (reading it back: record.py).

Layout: run.json (resolved recipe, base model, data hashes, versions, times, status, final metrics),
metrics.jsonl, checkpoints/step-N/, adapter/ (PEFT) or model/ (HF), loss.png; after `tunesmith eval`,
eval.json and report.html. Everything here is written atomically (atomic.py).
"""

from __future__ import annotations

import json
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunesmith import __version__
from tunesmith.errors import UserError
from tunesmith.runs.atomic import build_folder, write_text_atomic
from tunesmith.runs.record import RUN_FILE, RunRecord

if TYPE_CHECKING:
    from tunesmith.recipe import Recipe


def versions() -> dict[str, str]:
    """The library versions a run was trained with (recorded in run.json)."""
    import accelerate
    import peft
    import transformers

    return {
        "tunesmith": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "accelerate": accelerate.__version__, "python": platform.python_version(),
    }


def weights_folder_name(adapter: str) -> str:
    """Full fine-tuning saves a standalone `model/`; every adapter method an `adapter/` folder."""
    return "model" if adapter == "full" else "adapter"


class RunFolder:
    """The folder one training run writes into."""

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

    def write_record(self, recipe: Recipe, data_summary: dict[str, Any], state: dict[str, Any],
                     status: str) -> RunRecord:
        """Write run.json for `recipe` in `status`; `state` is the loop's state (its "final" kept apart)."""
        resolved = recipe.model_dump(mode="json")
        resolved["train"]["lr"] = recipe.lr
        model_path = Path(recipe.model)
        record = RunRecord(
            path=self.path, name=recipe.name, status=status, recipe=resolved,
            base_model=str(model_path.resolve()) if model_path.exists() else recipe.model,
            method=recipe.method, adapter=recipe.adapter, output=weights_folder_name(recipe.adapter),
            data=data_summary, versions=versions(), started=self.started,
            ended=datetime.now(timezone.utc).isoformat(timespec="seconds") if status != "running" else None,
            state={k: v for k, v in state.items() if k != "final"}, final=state.get("final"),
        )
        write_text_atomic(self.path / RUN_FILE, json.dumps(record.to_json(), indent=2, default=str))
        return record

    def weights_dir(self, adapter: str) -> Path:
        return self.path / weights_folder_name(adapter)

    def save_weights(self, model: torch.nn.Module, tokenizer: Any, adapter: str) -> Path:
        """Standard PEFT adapter folder or HF model folder, with the tokenizer and its chat template;
        scalar heads (reward, value) go to their own file, our bottleneck adapter to its two files."""
        from tunesmith.bottleneck import save_bottleneck
        from tunesmith.heads import heads_set_aside

        def fill(tmp: Path) -> None:
            with heads_set_aside(model, tmp):
                if adapter == "bottleneck":
                    save_bottleneck(model, tmp)
                else:
                    model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

        return build_folder(self.weights_dir(adapter), fill)
