"""`tunesmith eval` end to end on the real stories260k model: the benchmarks on the base model, then the
forgetting report of a short LoRA SFT run (deltas, perplexity before and after) and its gate both ways."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.errors import UserError
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.targets import resolve_target
from tunesmith.train.loop import train

runner = CliRunner()


def _text(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_benchmarks_on_stories260k(stories260k, shared_data, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "eval", str(stories260k), "--suite", "mmlu,hellaswag,gsm8k", "--data-dir", str(shared_data),
        "--limit", "2", "--shots", "1", "--max-new-tokens", "16", "--out", str(out), "--dtype", "fp32",
    ])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "eval.json").read_text())["results"]
    assert results["mmlu"]["n"] == 8 and set(results["mmlu"]["subjects"]) == {
        "abstract_algebra", "anatomy", "college_computer_science", "high_school_geography"}
    assert results["hellaswag"]["n"] == 2 and 0.0 <= results["hellaswag"]["acc_norm"] <= 1.0
    assert results["gsm8k"]["n"] == 2
    for name in ("mmlu", "hellaswag", "gsm8k"):
        assert re.search(rf"│ {name}\s+│", result.output)
    html = (out / "report.html").read_text()
    assert "mmlu" in html and "<script" not in html and "http" not in html.replace("http-equiv", "")


def _lora_run(stories: Path, data: Path, out: Path) -> Path:
    recipe = recipe_from_dict({
        "name": "lora", "model": str(stories), "output": str(out), "adapter": "lora",
        "data": {"train": str(data / "alpaca_1k.jsonl"), "max_rows": 40, "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 4, "batch_size": 4, "max_seq_len": 128, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 8, "alpha": 16, "dropout": 0.0},
        "eval": {"max_drop": -100, "limit": 2, "shots": 1},
    }, source="test")
    return train(recipe).path


def test_forgetting_report_and_gate_both_ways(stories260k, shared_data, tmp_path):
    run = _lora_run(stories260k, shared_data, tmp_path)
    mmlu = shared_data / "mmlu" / "test" / "anatomy_test.csv"  # one subject is enough here
    common = ["--data-dir", str(shared_data), "--mmlu", str(mmlu), "--max-new-tokens", "8", "--dtype", "fp32"]
    # 1. --base: deltas per benchmark and perplexity before/after; --max-drop 100 cannot be crossed -> exit 0
    result = runner.invoke(app, [
        "eval", str(run), "--base", "--suite", "heldout,ppl,mmlu,hellaswag", "--max-drop", "100",
        "--ppl-file", str(shared_data / "tinystories_valid_head.txt"), *common,
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "eval.json").read_text())
    assert record["base"]["model"] == str(stories260k.resolve())
    assert record["settings"]["limit"] == 2 and record["settings"]["shots"] == 1  # from the recipe's eval block
    deltas = {(d["suite"], d["metric"]): d for d in record["deltas"]}
    for key in [("mmlu", "acc"), ("hellaswag", "acc_norm"), ("ppl", "ppl"), ("heldout", "loss")]:
        assert key in deltas
    ppl = deltas[("ppl", "ppl")]
    assert ppl["base"] == pytest.approx(record["base_results"]["ppl"]["ppl"]) and ppl["base"] != ppl["tuned"]
    assert record["results"]["heldout"]["n"] == 2 and "rouge_l" in record["results"]["heldout"]
    assert record["gate"] == {"max_drop": 100.0, "rule": "ci", "failures": [], "notes": []}
    low, high = record["results"]["mmlu"]["intervals"]["acc"]["ci95"]
    assert 0.0 <= low <= record["results"]["mmlu"]["acc"] <= high <= 1.0
    assert deltas[("mmlu", "acc")]["paired"]["n"] == 2 and len(deltas[("hellaswag", "acc_norm")]["ci95"]) == 2
    hella = deltas[("hellaswag", "acc_norm")]  # one unit: the paired record is in points, as `change` is
    assert hella["paired"]["change"] == pytest.approx(hella["change"]) and hella["paired"]["ci95"] == hella["ci95"]
    assert hella["significant"] is False and hella["text"].split(", ")[1].startswith("not significant")  # 2 items
    assert deltas[("heldout", "loss")]["significant"] is None  # no per-item losses: untested, never coloured
    samples = [json.loads(line) for line in (run / "eval_samples.jsonl").read_text().splitlines()]
    assert {(s["model"], s["suite"]) for s in samples} == {(m, b) for m in ("tuned", "base")
                                                          for b in ("mmlu", "hellaswag")}
    assert all(len(s["scores"]) == 4 and set(s["correct"]) == {"acc", "acc_norm"} for s in samples)
    assert "href='eval_samples.jsonl'" in (run / "report.html").read_text()
    assert "change" in _text(result) and "pts" in _text(result)
    # 2. the recipe's eval.max_drop: -100 is always crossed -> exit 3, naming the benchmark and the drop
    result = runner.invoke(app, ["eval", str(run), "--suite", "hellaswag", *common])
    assert result.exit_code == 3, result.output
    assert "hellaswag acc_norm fell" in _text(result) and "forgetting gate failed" in _text(result)
    # 3. report.html regenerates offline from the run folder: loss curve and before/after chart embedded
    (run / "report.html").unlink()
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "hellaswag" in html and "fell" in html


def test_resolve_target(stories260k, tmp_path):
    model = resolve_target(str(stories260k))
    assert model.adapter is None and model.run is None and model.base_model is None
    assert model.default_out() == Path("runs") / "eval-stories260k"  # never inside the model folder
    with pytest.raises(UserError, match="compare a fine-tuned run with its base model"):
        model.base()
    with pytest.raises(UserError, match="neither a run folder"):
        resolve_target(str(tmp_path))
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text("{}")
    recipe = {"data": {"template": "chatml"}}
    (run / "run.json").write_text(json.dumps({"name": "r", "base_model": "org/m", "output": "adapter", "status": "done",
                                              "method": "sft", "adapter": "qlora", "recipe": recipe}))
    for spec in (run, run / "adapter"):
        target = resolve_target(str(spec))
        assert (target.model, target.adapter, target.template, target.run_dir) == ("org/m", run / "adapter", "chatml",
                                                                                    run)
        assert target.quantization == "nf4" and target.base().quantization == "nf4"
        assert target.base().model == "org/m" and target.default_out() == run
    (run / "run.json").write_text(json.dumps({"name": "r", "output": "model", "status": "running", "method": "sft",
                                              "adapter": "full", "base_model": "org/m", "recipe": recipe}))
    with pytest.raises(UserError, match="has no model/ folder yet"):
        resolve_target(str(run))


def test_eval_refuses_unclear_requests(stories260k, tmp_path):
    result = runner.invoke(app, ["eval", str(stories260k), "--suite", "mmlu", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--suite mmlu needs its data" in _text(result)
    result = runner.invoke(app, ["eval", str(stories260k), "--suite", "mmlu,hellaswg", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "did you mean 'hellaswag'" in _text(result)
    result = runner.invoke(app, ["eval", str(stories260k), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to evaluate" in _text(result)
    result = runner.invoke(app, ["eval", str(stories260k), "--base", "--heldout", "x.jsonl", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a plain model" in _text(result)
    result = runner.invoke(app, ["eval", str(stories260k), "--heldout", "missing.jsonl", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not found: missing.jsonl" in _text(result)
