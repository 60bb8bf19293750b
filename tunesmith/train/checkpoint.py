"""Checkpoints that survive a crash mid-save and resume a run bit for bit.

Layout: `run_dir/checkpoints/step-N/` holding
    trainable.safetensors   the parameters with requires_grad (the adapter for PEFT, every weight for full FT)
    optimizer.pt            optimizer.state_dict()
    scheduler.pt            scheduler.state_dict() (absent when the run has no scheduler)
    rng.pt                  python `random`, numpy, torch CPU and CUDA generator states
    trainer_state.json      {"step": N, ...the loop's JSON state: epoch, data cursor, best metric...}
    COMPLETE                written last; a folder without it is ignored

A save writes into `checkpoints/.tmp-step-N-<random>/`, fsyncs every file, then renames the folder to
`step-N` (one atomic rename on POSIX; runs/atomic.py): a crash leaves either the old set of checkpoints or the new one,
never a half-written `step-N`. Saving draws nothing from the global RNGs, so a run that saves trains
exactly like one that does not.

Save from the main process only, passing the unwrapped model (`accelerator.unwrap_model`), whose parameter
names carry no `module.` prefix, and every rank's RNG states gathered (`rng=`). Every rank loads, and
restores its own RNG states.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tunesmith.errors import UserError
from tunesmith.runs.atomic import build_folder, discard, remove_leftovers

CHECKPOINTS = "checkpoints"
WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
RNG = "rng.pt"
STATE = "trainer_state.json"
COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"step-(\d+)")


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    state: dict[str, Any],
    keep: int | None = None,
    protect: Collection[int] = (),
    rng: list[dict[str, Any]] | None = None,
    gathered: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Write `run_dir/checkpoints/step-<step>/` atomically, then keep only the newest `keep` checkpoints.

    `scheduler` is anything with `state_dict()` (an LRScheduler, accelerate's wrapper) or None.
    `state` is the loop's JSON-serialisable state; it comes back from `load_checkpoint` with "step" added.
    `protect` lists steps never deleted by rotation (the best checkpoint); they do not count towards `keep`.
    `rng` holds every rank's RNG states in a multi-process run (distributed.gather_rng); None saves this
    process's own. `gathered` = (trainable tensors, optimizer state) already collected from a sharded model
    (fsdp2.py); None reads them from `model` and `optimizer`.
    """
    if keep is not None and keep < 1:
        raise UserError(f"checkpoints to keep must be at least 1, got {keep}; use None to keep them all")
    if state.get("step", step) != step:
        raise ValueError(f"state['step']={state['step']} disagrees with step={step}")
    state_json = json.dumps({**state, "step": step}, indent=2)  # fails before anything is written
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    remove_leftovers(root, stem="step-")  # only the main process saves, so none is in use

    def fill(tmp: Path) -> None:
        trainable, optimizer_state = gathered if gathered is not None else (
            {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad},
            optimizer.state_dict())
        save_file(trainable, tmp / WEIGHTS)
        torch.save(optimizer_state, tmp / OPTIMIZER)
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / SCHEDULER)
        torch.save(_rng_states() if rng is None else {"per_rank": rng}, tmp / RNG)
        (tmp / STATE).write_text(state_json)
        (tmp / COMPLETE).write_text(f"{step}\n")

    # Re-saving a step (Ctrl-C right after a scheduled save) swaps the old folder out atomically.
    final = build_folder(root / f"step-{step}", fill, durable=True)
    if keep is not None:
        _rotate(root, keep, step, protect)
    return final


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, path), oldest first; temp folders and unfinished ones are skipped."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.fullmatch(path.name)
        if match and (path / COMPLETE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None when there is none to resume from."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1][1] if checkpoints else None


def load_checkpoint(
    path: Path,
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    rank: int = 0,
) -> dict[str, Any]:
    """Restore trainable weights, optimizer, scheduler and RNG states; return the loop state (with "step").

    `rank` picks this process's RNG states from a multi-process checkpoint (a rank beyond the saved count,
    after resuming with more processes, takes rank `rank % saved`: only dropout masks depend on it).

    The model must have the same trainable parameters (names and shapes) as when the checkpoint was
    saved, and the optimizer must be built over them in the same order.
    """
    path = Path(path)
    if not (path / COMPLETE).is_file():
        raise UserError(f"{path} is not a complete checkpoint (no {COMPLETE} marker); resume from another one")
    if model is not None:  # None: the caller restores weights and optimizer itself (a sharded model)
        _load_trainable(path / WEIGHTS, model)
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True))
    if scheduler is not None:
        if not (path / SCHEDULER).is_file():
            raise UserError(f"{path} was saved without a learning-rate scheduler; resume without one")
        scheduler.load_state_dict(torch.load(path / SCHEDULER, weights_only=True))
    states = torch.load(path / RNG, weights_only=True)
    if "per_rank" in states:
        states = states["per_rank"][rank % len(states["per_rank"])]
    _set_rng_states(states)
    return json.loads((path / STATE).read_text())


def _load_trainable(file: Path, model: nn.Module) -> None:
    saved = load_file(file)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(params.keys() - saved.keys()), sorted(saved.keys() - params.keys())
    wrong = sorted(n for n in params.keys() & saved.keys() if params[n].shape != saved[n].shape)
    if missing or unexpected or wrong:
        raise UserError(
            f"checkpoint {file.parent} does not match the model's trainable parameters "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {wrong[:3]}): "
            "resume with the same model, method and adapter settings as the run that saved it"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])


def rng_states() -> dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states (what a checkpoint restores)."""
    return _rng_states()


def _rng_states() -> dict[str, Any]:
    # numpy's key array is stored as a list so the file loads with weights_only=True.
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    return {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


def _rotate(root: Path, keep: int, written: int, protect: Collection[int]) -> None:
    """Keep the `keep` newest checkpoints, counting the one just written; protected ones are kept on top."""
    newest_first = reversed(list_checkpoints(root.parent))
    others = [path for step, path in newest_first if step != written and step not in protect]
    for path in others[keep - 1 :]:
        discard(path)
