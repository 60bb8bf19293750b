"""`tunesmith merge` and `tunesmith export` on real (tiny) runs: parity of merged vs adapter logits, refusals
for methods that cannot merge, and folders that plain transformers / PEFT load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tunesmith.adapters.build import load_adapter
from tunesmith.cli import app
from tunesmith.errors import UserError
from tunesmith.models.load import load_model
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs import read_run
from tunesmith.ship import merge as merge_module
from tunesmith.ship.merge import MergeParityError, export_run, merge_run
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import train

ADAPTERS = ("lora", "dora", "ia3", "qlora", "prefix", "prompt", "bottleneck")
IDS = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46], [1, 100, 7, 250, 3, 11, 60, 61]])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One finished two-step run per adapter method, all on the same tiny Llama."""
    root = tmp_path_factory.mktemp("merge")
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(32, BASE_SKILLS, seed=7)))
    base = save_tiny("llama", root / "base", vocab_size=300)
    folders = {}
    for adapter in ADAPTERS:
        recipe = recipe_from_dict({
            "name": adapter, "model": str(base), "adapter": adapter, "output": str(root / "runs"),
            "data": {"train": str(data), "eval": 0.0, "template": "plain"},
            "train": {"lr": 2e-2, "max_steps": 2, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no",
                      "warmup_ratio": 0.0},
            # lora computes in bf16 (what dtype: auto picks on a bf16 CPU) over a base stored in fp32
            "model_options": {"dtype": "bf16" if adapter == "lora" else "fp32"},
            "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0, "virtual_tokens": 4, "bottleneck_size": 8},
        })
        folders[adapter] = train(recipe).path
    return folders


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, use_cache=False).logits


def base_of(run: Path) -> str:
    return read_run(run).base_model


@pytest.mark.parametrize("adapter", ["lora", "dora", "ia3"])
def test_merged_model_matches_adapter_model(runs: dict[str, Path], adapter: str) -> None:
    run = runs[adapter]
    result = merge_run(run, dtype="fp32")
    assert result.out == run / "merged"  # the default: inside the run folder
    assert result.max_abs_diff <= 1e-4 and result.dtype == "fp32" and result.quantized_gap is None

    merged = AutoModelForCausalLM.from_pretrained(result.out)
    assert not (result.out / "adapter_config.json").exists()
    assert AutoTokenizer.from_pretrained(result.out).chat_template  # the run's template travels with it
    with_adapter = load_adapter(load_model(base_of(run), dtype="fp32"), run / "adapter")
    base = load_model(base_of(run), dtype="fp32")
    assert (logits(with_adapter) - logits(base)).abs().max() > 1e-3  # the adapter really changes the model
    torch.testing.assert_close(logits(merged), logits(with_adapter), rtol=0, atol=1e-4)


@pytest.mark.parametrize("adapter,why", [
    ("prefix", "virtual tokens"), ("prompt", "virtual tokens"), ("bottleneck", "nonlinear"),
])
def test_merge_refuses_methods_that_cannot_fold(runs: dict[str, Path], tmp_path: Path, adapter: str, why: str) -> None:
    with pytest.raises(UserError, match=f"cannot merge adapter: {adapter}: .*{why}.*tunesmith export"):
        merge_run(runs[adapter], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_writes_nothing_when_parity_fails(runs: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge_module, "TOLERANCE", 0.0)  # any rounding at all now counts as a mismatch
    monkeypatch.setattr(merge_module, "RELATIVE_TOLERANCE", 0.0)
    with pytest.raises(MergeParityError, match="nothing was written"):
        merge_run(runs["lora"], tmp_path / "merged", dtype="fp32")
    assert not (tmp_path / "merged").exists()


def test_parity_tolerance_grows_with_the_logits_scale_only_past_its_floor() -> None:
    """A correct fp32 merge of SmolLM2 (logits up to ~20) differed by 1.1e-4: the floor alone refused it."""
    assert merge_module.parity_tolerance(3.0) == merge_module.TOLERANCE
    assert merge_module.parity_tolerance(40.0) == pytest.approx(4e-4)
    assert merge_module.parity_tolerance(40.0) < 1e-2, "a wrong merge is still caught"


def test_merge_and_export_refuse_bad_inputs(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a run folder"):
        merge_run(tmp_path)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("keep me")
    with pytest.raises(UserError, match="--overwrite"):
        export_run(runs["lora"], taken)
    assert (taken / "x").read_text() == "keep me"
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    record = json.loads((runs["lora"] / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**record, "status": "interrupted"}))
    with pytest.raises(UserError, match="status 'interrupted'"):
        merge_run(unfinished)


def test_cli_merges_a_qlora_run_into_the_unquantized_base(runs: dict[str, Path], tmp_path: Path) -> None:
    run, out = runs["qlora"], tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "max |logit diff|" in text and "unquantized base" in text and "saved as fp32" in text

    merged = AutoModelForCausalLM.from_pretrained(out)
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    assert not any(type(p).__name__ == "Params4bit" for p in merged.parameters())
    with_adapter = load_adapter(load_model(base_of(run), dtype="fp32"), run / "adapter")
    base = load_model(base_of(run), dtype="fp32")
    assert (logits(with_adapter) - logits(base)).abs().max() > 1e-2  # the adapter really changes the model
    torch.testing.assert_close(logits(merged), logits(with_adapter), rtol=0, atol=1e-4)


def test_merge_keeps_the_base_stored_dtype_and_reports_parity_in_both(runs: dict[str, Path], tmp_path: Path) -> None:
    """The lora run computed in bf16, but its base is stored in fp32: the merge is saved in fp32 by default;
    `--dtype bf16` saves bf16, and the parity reported for the saved weights is the one measured on them."""
    run = runs["lora"]
    assert read_run(run).model_options["dtype"] == "bf16"
    kept = merge_run(run, tmp_path / "kept")
    assert kept.dtype == "fp32" and kept.saved_max_abs_diff == kept.max_abs_diff <= 1e-4
    assert {p.dtype for p in AutoModelForCausalLM.from_pretrained(kept.out).parameters()} == {torch.float32}

    cast = merge_run(run, tmp_path / "bf16", dtype="bf16")
    merged = AutoModelForCausalLM.from_pretrained(cast.out, dtype=torch.bfloat16)
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    assert cast.max_abs_diff <= 1e-4 < cast.saved_max_abs_diff
    with_adapter = load_adapter(load_model(base_of(run), dtype="fp32"), run / "adapter")
    measured = float((logits(merged).float() - logits(with_adapter)).abs().max())
    assert measured > 1e-4 and cast.saved_max_abs_diff > 1e-4  # bf16 rounding is visible, and reported


def test_stored_dtype_reads_the_config_or_the_weights(tmp_path: Path) -> None:
    from tunesmith.models.stored_dtype import stored_dtype

    base = save_tiny("llama", tmp_path / "bf16", vocab_size=300)
    assert stored_dtype(str(base)) == torch.float32
    AutoModelForCausalLM.from_pretrained(base).to(torch.bfloat16).save_pretrained(base)
    assert stored_dtype(str(base)) == torch.bfloat16
    config = json.loads((base / "config.json").read_text())
    config.pop("dtype", None), config.pop("torch_dtype", None)
    (base / "config.json").write_text(json.dumps(config))
    assert stored_dtype(str(base)) == torch.bfloat16, "no dtype in config.json: the safetensors header tells"


def test_cli_merge_explains_a_refusal(runs: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["merge", str(runs["prefix"])])
    assert result.exit_code == 2 and "cannot merge adapter: prefix" in " ".join(result.output.split())


@pytest.mark.parametrize("adapter", ["lora", "prompt"])
def test_cli_export_writes_a_loadable_peft_folder(runs: dict[str, Path], tmp_path: Path, adapter: str) -> None:
    run, out = runs[adapter], tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == base_of(run) and Path(base_of(run)).is_absolute()
    readme = (out / "README.md").read_text()
    assert base_of(run) in readme and "PeftModel.from_pretrained" in readme
    if adapter == "lora":
        assert f"--enable-lora --lora-modules {adapter}={out.resolve()}" in readme
    else:
        assert "serves plain LoRA adapters only" in readme
    exported = PeftModel.from_pretrained(load_model(base_of(run), dtype="fp32"), str(out))
    original = PeftModel.from_pretrained(load_model(base_of(run), dtype="fp32"), str(run / "adapter"))
    assert torch.equal(logits(exported), logits(original))


def test_export_of_a_bottleneck_run_loads_with_load_bottleneck(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["bottleneck"]
    out = export_run(run, tmp_path / "exported")
    assert "load_bottleneck" in (out / "README.md").read_text()
    exported = load_adapter(load_model(base_of(run), dtype="fp32"), out)
    original = load_adapter(load_model(base_of(run), dtype="fp32"), run / "adapter")
    assert torch.equal(logits(exported), logits(original))
