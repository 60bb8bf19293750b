"""`tunesmith merge A B --method M`: several runs of one base combined into one run folder.

The LoRA merges are pinned end to end to PEFT's own `add_weighted_adapter` (built here from the parents'
adapter folders, not through tunesmith), the full-run merges to `peft.utils.merge_utils` applied here to the
runs' weights minus the base's, and SLERP to its closed form; every refusal is checked to happen before
anything is written."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import peft.utils.merge_utils as merge_utils
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.errors import UserError
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs import read_run, resolve_target
from tunesmith.runs.load import load_target
from tunesmith.ship.combine import combine_runs
from tunesmith.ship.merge import export_run, merge_run
from tunesmith.testing.demo import make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import train

IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46], [1, 100, 7, 250, 3, 11, 60, 61]])
LORA_METHODS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune", "ties_svd",
                "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd")


def _train(root: Path, name: str, base: Path, skill: str, adapter: str = "lora", r: int = 4, seed: int = 1) -> Path:
    data = root / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in make_rows(32, (skill,), seed=seed)))
    recipe = recipe_from_dict({
        "name": name, "model": str(base), "adapter": adapter, "output": str(root / "runs"),
        "data": {"train": str(data), "eval": 0.0, "template": "plain"},
        "train": {"lr": 2e-2 if adapter != "full" else 1e-3, "max_steps": 2, "batch_size": 4, "max_seq_len": 64,
                  "mixed_precision": "no", "warmup_ratio": 0.0},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": r, "alpha": 2 * r, "dropout": 0.0},
    })
    return train(recipe, advice=False).path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two LoRA runs of two skills, one of rank 8, a DoRA run, two full runs, and a LoRA run of another base."""
    root = tmp_path_factory.mktemp("combine")
    base = save_tiny("llama", root / "base", vocab_size=300)
    other = save_tiny("llama", root / "other-base", vocab_size=300, seed=1)
    return {
        "a": _train(root, "a", base, "Reverse the words"),
        "b": _train(root, "b", base, "Say the first word", seed=2),
        "r8": _train(root, "r8", base, "Repeat the words", r=8, seed=3),
        "dora": _train(root, "dora", base, "Repeat the words", adapter="dora"),
        "full_a": _train(root, "full_a", base, "Reverse the words", adapter="full"),
        "full_b": _train(root, "full_b", base, "Say the first word", adapter="full", seed=2),
        "other": _train(root, "other", other, "Reverse the words"),
    }


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, use_cache=False).logits.float()


def peft_reference(runs: dict[str, Path], method: str, weights: list[float], density: float | None) -> PeftModel:
    """PEFT's own combination of adapters a and b, built straight from their folders."""
    base = AutoModelForCausalLM.from_pretrained(read_run(runs["a"]).base_model, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(runs["a"] / "adapter"), adapter_name="x")
    model.load_adapter(str(runs["b"] / "adapter"), adapter_name="y")
    torch.manual_seed(0)
    model.add_weighted_adapter(["x", "y"], weights, "ref", combination_type=method, density=density)
    model.set_adapter("ref")
    return model.eval()


@pytest.mark.parametrize("method", LORA_METHODS)
def test_lora_merge_equals_peft_add_weighted_adapter(runs: dict[str, Path], tmp_path: Path, method: str) -> None:
    density = None if method in ("linear", "cat", "svd") else 0.5
    result = combine_runs([runs["a"], runs["b"]], method, [1.0, 0.7], density, tmp_path / method)
    assert result.output == "adapter" and result.rank == (8 if method == "cat" else 4)
    target = resolve_target(str(result.out))  # an ordinary run folder: the adapter on the shared base
    assert target.adapter == result.out / "adapter" and target.base_model == read_run(runs["a"]).base_model
    ours = load_target(target, dtype="fp32", merge=False).model
    reference = peft_reference(runs, method, [1.0, 0.7], density)
    torch.testing.assert_close(logits(ours), logits(reference), rtol=0, atol=1e-5)
    single = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(target.model), str(runs["a"] / "adapter"))
    assert (logits(ours) - logits(single)).abs().max() > 1e-3, "the merge is not just one parent"


def test_merged_folder_records_its_parents_and_settings(runs: dict[str, Path], tmp_path: Path) -> None:
    out = combine_runs([runs["a"], runs["b"]], "dare_ties", [1, 1], 0.3, tmp_path / "m", seed=5).out
    record = read_run(out)
    assert record.status == "done" and record.adapter == "lora" and record.output == "adapter"
    merge = record.extra["merge"]
    assert [p["name"] for p in merge["parents"]] == ["a", "b"]
    assert merge["parents"][0]["path"] == str(runs["a"].resolve()) and len(merge["parents"][0]["weights_sha256"]) == 64
    assert (merge["method"], merge["weights"], merge["density"], merge["seed"]) == ("dare_ties", [1.0, 1.0], 0.3, 5)
    assert record.to_recipe().name == "m"  # its recipe re-validates (eval re-creates the data split from it)


def test_merged_folder_exports_and_merges_like_a_run(runs: dict[str, Path], tmp_path: Path) -> None:
    combined = combine_runs([runs["a"], runs["b"]], "ties_svd", None, 0.5, tmp_path / "m").out
    exported = export_run(combined, tmp_path / "exported")
    base = read_run(runs["a"]).base_model
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(exported))
    torch.testing.assert_close(logits(loaded), logits(peft_reference(runs, "ties_svd", [1.0, 1.0], 0.5)), rtol=0,
                               atol=1e-5)
    folded = merge_run(combined, tmp_path / "folded", dtype="fp32")
    assert folded.max_abs_diff <= folded.tolerance
    torch.testing.assert_close(logits(AutoModelForCausalLM.from_pretrained(folded.out)), logits(loaded), rtol=0,
                               atol=1e-4)


def test_into_base_folds_the_combined_adapter(runs: dict[str, Path], tmp_path: Path) -> None:
    result = combine_runs([runs["a"], runs["b"]], "ties", None, 0.5, tmp_path / "folded", into_base=True)
    assert result.output == "model" and result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    assert read_run(result.out).output == "model" and not (result.out / "model" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(result.out / "model")
    torch.testing.assert_close(logits(merged), logits(peft_reference(runs, "ties", [1.0, 1.0], 0.5)), rtol=0, atol=1e-4)


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).state_dict()


@pytest.mark.parametrize("method", ["linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"])
def test_full_runs_merge_their_task_vectors_like_peft_merge_utils(runs: dict[str, Path], tmp_path: Path,
                                                                   method: str) -> None:
    density = None if method == "linear" else 0.4
    result = combine_runs([runs["full_a"], runs["full_b"]], method, [0.6, 0.9], density, tmp_path / method, seed=3)
    assert result.output == "model" and read_run(result.out).adapter == "full"
    base = _state(Path(read_run(runs["full_a"]).base_model))
    a, b = _state(runs["full_a"] / "model"), _state(runs["full_b"] / "model")
    merged = _state(result.out / "model")
    key = "model.layers.1.mlp.down_proj.weight"
    deltas = [a[key] - base[key], b[key] - base[key]]
    assert deltas[0].abs().max() > 0 and deltas[1].abs().max() > 0
    expected = {"linear": lambda: merge_utils.task_arithmetic(deltas, torch.tensor([0.6, 0.9])),
                "ties": lambda: merge_utils.ties(deltas, torch.tensor([0.6, 0.9]), 0.4),
                "magnitude_prune": lambda: merge_utils.magnitude_prune(deltas, torch.tensor([0.6, 0.9]), 0.4)}
    if method in expected:
        torch.testing.assert_close(merged[key], base[key] + expected[method](), rtol=0, atol=1e-6)
    else:  # DARE draws at random: same seed, same order of tensors -> the same draws as PEFT's, tensor by tensor
        torch.manual_seed(3)
        for name, value in base.items():
            combine = merge_utils.dare_linear if method == "dare_linear" else merge_utils.dare_ties
            want = value + combine([a[name] - value, b[name] - value], torch.tensor([0.6, 0.9]), 0.4)
            if name == key:
                torch.testing.assert_close(merged[key], want, rtol=0, atol=1e-6)
                break


def test_slerp_of_two_full_runs_follows_the_arc(runs: dict[str, Path], tmp_path: Path) -> None:
    result = combine_runs([runs["full_a"], runs["full_b"]], "slerp", [1, 3], None, tmp_path / "slerp")
    a, b = _state(runs["full_a"] / "model"), _state(runs["full_b"] / "model")
    key = "model.layers.0.self_attn.q_proj.weight"
    x, y = a[key].double().flatten(), b[key].double().flatten()
    theta = math.acos(float(x @ y / (x.norm() * y.norm())))
    assert theta > 1e-3, "the two runs' tensors must differ in direction for the check to mean anything"
    t = 0.75
    want = (math.sin((1 - t) * theta) * x + math.sin(t * theta) * y) / math.sin(theta)
    torch.testing.assert_close(_state(result.out / "model")[key].double().flatten(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pair,method,why", [
    (("a", "other"), "ties", "different base models"),
    (("a", "full_a"), "linear", "different adapter kinds"),
    (("a", "r8"), "ties", r"same rank; these differ \(a: r=4, r8: r=8\)\. Use --method cat or svd"),
    (("a", "a"), "linear", "given twice"),
    (("a", "b"), "slerp", "does not combine lora runs"),
    (("full_a", "full_b"), "cat", "does not combine full runs"),
    (("a", "b"), "tie", "did you mean 'ties'"),
])
def test_refusals_name_the_reason_and_write_nothing(runs: dict[str, Path], tmp_path: Path, pair: tuple[str, str],
                                                     method: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        combine_runs([runs[pair[0]], runs[pair[1]]], method, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dora_runs_and_bad_settings_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    dora_copy = Path(shutil.copytree(runs["dora"], tmp_path / "dora2"))
    with pytest.raises(UserError, match="cannot be merged together: .*not DoRA's learned magnitudes"):
        combine_runs([runs["dora"], dora_copy], "linear", out=tmp_path / "out")
    with pytest.raises(UserError, match="--weights has 1 values for 2 runs"):
        combine_runs([runs["a"], runs["b"]], "linear", [1.0], out=tmp_path / "out")
    with pytest.raises(UserError, match="--density applies to the methods that prune"):
        combine_runs([runs["a"], runs["b"]], "cat", density=0.5, out=tmp_path / "out")
    with pytest.raises(UserError, match=r"--density 1.5 must be in \(0, 1\]"):
        combine_runs([runs["a"], runs["b"]], "ties", density=1.5, out=tmp_path / "out")
    with pytest.raises(UserError, match="--dtype sets the dtype of a saved model"):
        combine_runs([runs["a"], runs["b"]], "ties", dtype="bf16", out=tmp_path / "out")
    with pytest.raises(UserError, match="always merge into a model: drop --into-base"):
        combine_runs([runs["full_a"], runs["full_b"]], "ties", into_base=True, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unfinished_runs_and_taken_folders_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    record = json.loads((runs["b"] / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    with pytest.raises(UserError, match="status 'interrupted'"):
        combine_runs([runs["a"], unfinished], "linear", out=tmp_path / "out")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="not a tunesmith run folder"):
            combine_runs([runs["a"], runs["b"]], "linear", out=taken, overwrite=overwrite)
    assert (taken / "notes.txt").read_text() == "keep me"
    with pytest.raises(UserError, match="overwrite its own input"):
        combine_runs([runs["a"], runs["b"]], "linear", out=runs["a"] / "adapter", overwrite=True)
    assert (runs["a"] / "adapter" / "adapter_config.json").is_file()


def test_cli_merges_two_runs_and_replaces_only_with_overwrite(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    command = ["merge", str(runs["a"]), str(runs["b"]), "--method", "ties", "--weights", "1,0.5", "--out", str(out)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "LoRA adapter of rank 4" in result.output and read_run(out).extra["merge"]["weights"] == [1.0, 0.5]
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert CliRunner().invoke(app, [*command, "--overwrite"]).exit_code == 0
    missing = CliRunner().invoke(app, ["merge", str(runs["a"]), str(runs["b"])])
    assert missing.exit_code == 2 and "--method" in missing.output
