"""Creating and writing a run folder `output/name/` while it trains (reading it back: record.py).

Layout: run.json (resolved recipe, base model, data hashes, versions, times, status, final metrics),
metrics.jsonl, checkpoints/step-N/, adapter/ (PEFT) or model/ (HF), loss.png; after `tunesmith eval`,
eval.json and report.html. Everything here is written atomically (atomic.py).
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunesmith import __version__
from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.errors import UserError
from tunesmith.runs.atomic import build_folder, discard, remove_leftovers, write_text_atomic
from tunesmith.runs.lock import RunLock, acquire_lock
from tunesmith.runs.prior import check_existing
from tunesmith.runs.record import RUN_FILE, RunRecord

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe


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
    return "model" if ADAPTER_KINDS[adapter].trains_base else "adapter"


class RunFolder:
    """The folder one training run writes into; with `main=False` (the other ranks of a multi-process run)
    every write is left to the main process and the calls return without touching the disk."""

    def __init__(self, path: Path, main: bool = True) -> None:
        self.path = Path(path)
        self.main = main
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.lock: RunLock | None = None
        self.restart = False
        """True when --resume found nothing to resume from (no checkpoint yet): the run starts over."""
        self._replace = False

    def prepare(self, *, resume: bool, overwrite: bool = False) -> None:
        """Lock the folder and check it may be used; nothing is deleted yet (see `start`).

        Refuses to mix a new run into an old one unless told what to do, never treats a folder without
        run.json as a run, and marks a run whose process died while it was `running` as `killed`.
        """
        if not self.main:
            return
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"the run folder {self.path} is a file; change output= or name=")
        for parent in self.path.parents:
            if parent.exists() and not parent.is_dir():
                raise UserError(f"output path {parent} is a file, not a folder; change output=")
        self.lock = acquire_lock(self.path)
        try:
            self._replace = check_existing(self.path, resume=resume, overwrite=overwrite, lock=self.lock)
        except BaseException:
            self.release()
            raise

    def start(self) -> None:
        """Called once recipe, model and data have loaded: only now may `--overwrite` remove the old run
        (it was checked to be a tunesmith run folder) and the folder be created."""
        if not self.main:
            return
        if self._replace and self.path.exists():
            discard(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.path)  # `.tmp-adapter-*` of a save the last process did not finish

    def release(self) -> None:
        """Free the run folder for the next process (the kernel also frees it if this one dies)."""
        if self.lock is not None:
            self.lock.release()

    def write_record(self, recipe: Recipe, data_summary: dict[str, Any], state: dict[str, Any],
                     status: str, reason: str | None = None) -> RunRecord:
        """Write run.json for `recipe` in `status` (with `reason` when it stopped early); `state` is the
        loop's state (its "final" kept apart)."""
        resolved = recipe.model_dump(mode="json")
        resolved["train"]["lr"] = recipe.lr
        model_path = Path(recipe.model)
        record = RunRecord(
            path=self.path, name=recipe.name, status=status, recipe=resolved,
            base_model=str(model_path.resolve()) if model_path.exists() else recipe.model,
            method=recipe.method, adapter=recipe.adapter, output=weights_folder_name(recipe.adapter),
            data=data_summary, versions=versions(), started=self.started,
            ended=datetime.now(timezone.utc).isoformat(timespec="seconds") if status != "running" else None,
            state={k: v for k, v in state.items() if k != "final"}, final=state.get("final"), reason=reason,
        )
        if not self.main:
            return record
        write_text_atomic(self.path / RUN_FILE, json.dumps(record.to_json(), indent=2, default=str))
        return record

    def weights_dir(self, adapter: str) -> Path:
        return self.path / weights_folder_name(adapter)

    def save_weights(self, model: torch.nn.Module, tokenizer: Any, adapter: str,
                     state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Standard PEFT adapter folder or HF model folder, with the tokenizer and its chat template;
        scalar heads (reward, value) go to their own file, our bottleneck adapter to its two files.
        `state_dict`: the full tensors when the model in memory is sharded (fsdp2 gathers them first)."""
        from tunesmith.models.heads import heads_set_aside

        own_format = ADAPTER_KINDS[adapter].save

        def fill(tmp: Path) -> None:
            with heads_set_aside(model, tmp):
                if own_format is not None:
                    own_format(model, tmp)
                elif state_dict is not None:
                    model.save_pretrained(tmp, state_dict=state_dict)
                else:
                    model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            check_saved_tensors(tmp)

        if not self.main:
            return self.weights_dir(adapter)
        return build_folder(self.weights_dir(adapter), fill)


def check_saved_tensors(folder: Path) -> None:
    """A UserError when the saved weights hold no tensor or an empty one: sharded training (ZeRO-3, FSDP) that
    saves a rank's empty shard instead of the gathered weights has shipped such adapters as a silent success."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    empty: list[str] = []
    count = 0
    for file in files:
        with safe_open(str(file), "pt") as handle:
            for name in handle.keys():
                count += 1
                if 0 in handle.get_slice(name).get_shape():
                    empty.append(name)
    if files and (count == 0 or empty):
        raise UserError(
            f"the weights saved to {folder} are empty ({count} tensors, empty: {empty[:3]}); the model was "
            "probably still sharded across processes when it was saved. This is a bug in how the run was "
            "launched or saved, and nothing was kept: report it with the recipe"
        )
