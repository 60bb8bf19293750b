"""`--resume` continues the data plan its checkpoint was saved in, or refuses, naming what changed.

A checkpoint is a position in a batch plan fixed up front (train/batches.py): optimizer step k consumes the
micro-batches [k*accum, (k+1)*accum) of a plan made from the data, the seed, the batch shape and the sequence
length. Continuing at step k of another plan (another data file, seed, batch size, max_seq_len, packing...)
gives neither the old run nor a new one, and used to pass without a word. So these keys must match the
recipe recorded in run.json; data files are compared by content (their sha256 in run.json), not by the path
typed, so a resume from another working directory still passes.

What resume applies on purpose may change: the learning rate and schedule (train/schedule_change.py), a
longer or shorter run (max_steps, epochs: the plan is a prefix of the longer one), and how often it
evaluates, saves and logs. A run with no checkpoint yet starts over on the new plan: nothing is checked.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import UserError
from tunesmith.runs.record import is_run_folder, read_run
from tunesmith.train.checkpoint import latest_checkpoint

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe

PLAN_KEYS = (
    "model", "method", "adapter", "adapter_args", "data", "train.batch_size", "train.grad_accum",
    "train.max_seq_len", "train.packing", "train.seed", "train.shuffle", "train.weight_decay",
)
"""Recipe keys (and whole blocks) a resume must keep: the data plan, the model and what is trained."""
FREE_KEYS = ("data.cache",)
"""Keys inside a plan block that do not change the plan."""
FILE_KEYS = ("data.train", "data.eval", "data.replay.train")
"""Keys naming data files: compared by the files' content, where run.json recorded it."""
MAY_CHANGE = ("train.lr", "train.scheduler", "train.warmup_ratio", "train.max_steps", "train.epochs",
              "train.eval_every", "train.save_every", "train.keep_checkpoints", "train.log_every")


def checkpoint_to_resume(recipe: Recipe, run_dir: Path, sources: dict[str, str]) -> Path | None:
    """The newest checkpoint of `run_dir`, once the recipe is checked to keep the data plan it was saved in
    (`sources`: sha256 by data file, as the data pipeline read them); None when there is none yet."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None or not is_run_folder(run_dir):
        return checkpoint
    run = read_run(run_dir)
    recorded = {**run.recipe, "model": run.base_model}  # the path resolved when it trained, as recipe_json does
    changes = plan_changes(recorded, recipe_json(recipe), run.data.get("sources"), sources)
    if changes:
        raise UserError(
            f"--resume would continue {run_dir} on another data plan: {'; '.join(changes)}. Its {checkpoint.name} "
            "is a position in the plan it was saved in, so the result would be neither that run nor a new one. "
            f"Undo the change(s) to resume, or train them as a new run: add name={recipe.name}-2 (or pass "
            f"--overwrite instead of --resume to replace this run). --resume may change {', '.join(MAY_CHANGE)}"
        )
    return checkpoint


def recipe_json(recipe: Recipe) -> dict[str, Any]:
    """The recipe as run.json records it (folder.py: model_dump, with the base model's path resolved)."""
    resolved = recipe.model_dump(mode="json")
    model = Path(recipe.model)
    resolved["model"] = str(model.resolve()) if model.exists() else recipe.model
    return resolved


def plan_changes(old: dict[str, Any], new: dict[str, Any], old_sources: Any, new_sources: dict[str, str]) -> list[str]:
    """`key: old -> new` for every plan key that differs; keys one side lacks (another version's schema)
    are skipped, data files compared by content when both sides recorded it."""
    by_content = isinstance(old_sources, dict) and bool(old_sources) and bool(new_sources)
    flat_old, flat_new = _flatten(old), _flatten(new)
    changes = []
    for key in sorted(flat_old.keys() & flat_new.keys()):
        planned = any(key == k or key.startswith(k + ".") for k in PLAN_KEYS) and key not in FREE_KEYS
        if not planned or (by_content and key in FILE_KEYS and _is_path(flat_old[key]) and _is_path(flat_new[key])):
            continue
        if flat_old[key] != flat_new[key]:
            changes.append(f"{key}: {flat_old[key]!r} -> {flat_new[key]!r}")
    if by_content and _content(old_sources) != _content(new_sources):
        changes.append("the data files' content (sha256 differs from the one recorded in run.json)")
    return changes


def _flatten(block: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in block.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _is_path(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _content(sources: dict[str, str]) -> Counter:
    """The files' hashes, hub datasets by name: what the data is, whatever path it was reached by."""
    return Counter(name if digest == "hub" else digest for name, digest in sources.items())
