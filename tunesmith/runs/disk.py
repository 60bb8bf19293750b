"""Free disk checked before training, not discovered at the third checkpoint.

A checkpoint holds the trainable weights and the optimizer state; rotation writes the new one before it
deletes the oldest, so the folder needs room for keep+1 of them at once (one more when the best
checkpoint is protected), plus the final weights and the tokenizer saved beside them. The estimate is
computed from the trainable parameter and optimizer bytes, plus 1 MiB per checkpoint for its small files
(RNG states, scheduler, trainer state; measured about 40 KiB, filesystem blocks included) and a 10% margin.
A 3 MiB filesystem showed why the small files count: without them a tiny run passed the check and then
filled the disk at its third checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from tunesmith.errors import UserError

GB = 1024**3
MARGIN = 1.10
CHECKPOINT_OVERHEAD = 1024**2
UNKNOWN_TOKENIZER = 32 * 1024**2


def checkpoint_bytes(model: torch.nn.Module, optimizer_states_per_param: int = 2) -> int:
    """Bytes of one checkpoint: trainable weights plus fp32 optimizer states (AdamW keeps two per weight)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = sum(_numel(p) * p.element_size() for p in trainable)
    return weights + sum(_numel(p) * 4 * optimizer_states_per_param for p in trainable)


def final_bytes(model: torch.nn.Module, full: bool) -> int:
    """Bytes of the saved result: every weight for full fine-tuning, the trainable ones for an adapter."""
    params = [p for p in model.parameters() if full or p.requires_grad]
    return sum(_numel(p) * p.element_size() for p in params)


def _numel(param: torch.nn.Parameter) -> int:
    """Elements of the whole weight, also when DeepSpeed ZeRO-3 left this process only a slice of it."""
    return int(getattr(param, "ds_numel", param.numel()))


def tokenizer_bytes(model: str) -> int:
    """Bytes of the tokenizer files saved with the weights: measured in a local model folder, else a guess."""
    folder = Path(model)
    if not folder.is_dir():
        return UNKNOWN_TOKENIZER
    names = ("tokenizer", "vocab", "merges", "special_tokens", "chat_template", "added_tokens")
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and f.name.startswith(names))


def stored_checkpoint_bytes(run_dir: Path) -> int:
    """Bytes the run's complete checkpoints already take (`checkpoints/step-N/` with its COMPLETE marker):
    a resumed run rotates them out, so they count towards its checkpoints, not on top of them."""
    root = Path(run_dir) / "checkpoints"
    folders = [p for p in root.glob("step-*") if (p / "COMPLETE").is_file()] if root.is_dir() else []
    return sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())


def require_free_disk(run_dir: Path, *, checkpoint: int, checkpoints: int, final: int) -> int:
    """Raise a UserError when the disk under `run_dir` lacks room for `checkpoints` checkpoints of
    `checkpoint` bytes plus `final` bytes; return the bytes still needed. Checkpoints already in `run_dir`
    (a resumed run; an --overwrite'n one is deleted first) are part of the rotation: they need no new room."""
    rotating = (checkpoint + CHECKPOINT_OVERHEAD) * checkpoints
    held = min(stored_checkpoint_bytes(run_dir), rotating)
    need = int((rotating + final) * MARGIN) - held
    probe = Path(run_dir)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        kept = f", less the {size(held)} its checkpoints already take" if held else ""
        raise UserError(
            f"not enough free disk for this run in {run_dir}: it needs about {size(need)} "
            f"({checkpoints} checkpoint(s) of {size(checkpoint + CHECKPOINT_OVERHEAD)} while rotating, plus "
            f"{size(final)} of final weights and tokenizer{kept}) and {size(free)} is free. Free space, lower "
            "train.keep_checkpoints, save "
            "less often (train.save_every), or point output= to a larger disk"
        )
    return need


def size(n: float) -> str:
    """Bytes for a reader: 3.2 MB, 1.50 GB."""
    return f"{n / GB:.2f} GB" if n >= GB else f"{n / 1024**2:.1f} MB"
