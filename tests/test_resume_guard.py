"""`--resume` continues the data plan its checkpoint was saved in or refuses naming each changed key; a
refused resume leaves run.json as it was; the free-disk check counts the checkpoints already on disk once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.test_train import make_recipe, tiny_setup  # noqa: F401  (fixture)
from tunesmith.errors import UserError
from tunesmith.recipe.spec import Recipe, recipe_from_dict
from tunesmith.runs import disk
from tunesmith.runs.metrics import read_metrics
from tunesmith.runs.prior import mark_status
from tunesmith.train import loop
from tunesmith.train.loop import train
from tunesmith.train.resume_guard import plan_changes


def changed(recipe: Recipe, key: str, value: Any) -> Recipe:
    raw = recipe.model_dump(mode="json")
    node = raw
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    node[last] = value
    return recipe_from_dict(raw)


def run_json(recipe: Recipe) -> dict:
    return json.loads((recipe.run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def saved(tiny_setup, tmp_path_factory) -> Recipe:  # noqa: F811
    """A run interrupted after two steps, each saved as a checkpoint."""
    recipe = make_recipe(tiny_setup, tmp_path_factory.mktemp("resume"), max_steps=2, save_every=1)
    train(recipe)
    mark_status(recipe.run_dir, "interrupted", "stopped by the test")
    return recipe


@pytest.mark.parametrize(("key", "value"), [
    ("train.batch_size", 8), ("train.seed", 1), ("train.max_seq_len", 48), ("train.grad_accum", 2),
    ("train.packing", False), ("data.eval", 0.2), ("data.max_rows", 100), ("adapter_args.r", 8),
])
def test_a_changed_data_plan_is_refused_naming_the_key_and_run_json_is_kept(saved: Recipe, key: str, value: Any) -> None:
    before = (saved.run_dir / "run.json").read_bytes()
    with pytest.raises(UserError, match=rf"another data plan: {key}: .* -> {value!r}.*name=t-2"):
        train(changed(saved, key, value), resume=True)
    assert (saved.run_dir / "run.json").read_bytes() == before  # status stays 'interrupted', not 'running'
    assert run_json(saved)["status"] == "interrupted"


def test_another_data_file_is_refused_by_content_and_a_copy_elsewhere_is_not(saved: Recipe, tmp_path: Path) -> None:
    rows = Path(saved.data.train).read_text().splitlines(keepends=True)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(rows[1:] + rows[:1]))  # the same rows, another order: another plan
    with pytest.raises(UserError, match="data files' content"):
        train(changed(saved, "data.train", str(other)), resume=True)
    assert run_json(saved)["status"] == "interrupted"
    old = {"data": {"train": "/a/rows.jsonl"}, "model": "/m"}
    new = {"data": {"train": "rows.jsonl", "cache": False}, "model": "/m"}
    assert plan_changes(old, new, {"/a/rows.jsonl": "abc"}, {"rows.jsonl": "abc"}) == []  # same file, other path
    assert plan_changes(old, new, None, {"rows.jsonl": "abc"}) == ["data.train: '/a/rows.jsonl' -> 'rows.jsonl'"]


def test_what_resume_supports_still_changes(tiny_setup, tmp_path: Path) -> None:  # noqa: F811
    recipe = make_recipe(tiny_setup, tmp_path / "runs", max_steps=2, save_every=1)
    train(recipe)
    copy = tmp_path / "copy.jsonl"
    shutil.copy(recipe.data.train, copy)  # the same data reached by another path
    longer = changed(changed(changed(recipe, "train.max_steps", 3), "train.lr", 5e-3), "data.train", str(copy))
    train(changed(longer, "train.eval_every", 1), resume=True)
    assert run_json(recipe)["status"] == "done"
    assert [r["step"] for r in read_metrics(recipe.run_dir / "metrics.jsonl") if "loss" in r] == [1, 2, 3]


def test_a_resume_that_fails_to_load_leaves_the_status_as_it_was(saved: Recipe, monkeypatch) -> None:
    def damaged(*args: object, **kwargs: object) -> dict:
        raise UserError("checkpoint damaged")

    monkeypatch.setattr(loop, "load_checkpoint", damaged)
    with pytest.raises(UserError, match="checkpoint damaged"):
        train(saved, resume=True)
    assert run_json(saved)["status"] == "interrupted"


def test_free_disk_on_resume_counts_the_checkpoints_already_there_once(tiny_setup, tmp_path: Path,  # noqa: F811
                                                                     monkeypatch) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=2, save_every=1, keep_checkpoints=2)
    needs: list[int] = []
    real = loop.require_free_disk
    monkeypatch.setattr(loop, "require_free_disk", lambda *a, **k: needs.append(real(*a, **k)) or needs[-1])
    train(recipe)
    stored = disk.stored_checkpoint_bytes(recipe.run_dir)
    assert stored > 0 and (recipe.run_dir / "checkpoints" / "step-1" / "COMPLETE").is_file()
    mark_status(recipe.run_dir, "interrupted", "stopped by the test")
    free = needs[0] - stored // 2  # enough for what a resume adds, not for every checkpoint once more
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: SimpleNamespace(free=free))
    train(changed(recipe, "train.max_steps", 3), resume=True)
    assert needs[1] == needs[0] - stored and run_json(recipe)["status"] == "done"
