"""`tunesmith compare`: strategies trained and evaluated alike, the trade-off table in markdown/CSV/PNG, and
an interrupted comparison resuming without retraining finished strategies."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tunesmith.compare import run_comparison
from tunesmith.compare.run_files import train_tokens_per_second
from tunesmith.compare.spec import load_spec, strategy_recipes
from tunesmith.compare.table import proportion_change
from tunesmith.errors import UserError
from tunesmith.testing.tiny import save_tiny

REPO = Path(__file__).resolve().parents[1]


def test_interval_and_throughput_arithmetic() -> None:
    change, half = proportion_change(0.40, 0.35, 100)
    assert change == pytest.approx(-5.0)
    assert half == pytest.approx(100 * 1.96 * ((0.4 * 0.6 + 0.35 * 0.65) / 100) ** 0.5)  # 13.5 points
    records = [{"step": 0, "eval_loss": 1.0}, {"step": 1, "tokens": 100, "tokens_per_s": 50.0},
               {"step": 2, "tokens": 400, "tokens_per_s": 100.0}]
    assert train_tokens_per_second(records) == pytest.approx(400 / (2 + 3))


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    rows = [{"instruction": f"add {i} and 1", "output": str(i + 1)} for i in range(60)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    general = tmp_path / "general.txt"
    general.write_text("\n".join(f"the cat sat on mat number {i}." for i in range(30)))
    model = save_tiny("llama", tmp_path / "base", vocab_size=300, texts=[r["instruction"] for r in rows])
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
name: t
out: {tmp_path / 'out'}
recipe:
  model: {model}
  data: {{train: {data}, eval: 0.1, template: plain}}
  train: {{max_steps: 2, batch_size: 4, max_seq_len: 64, threads: 1, lr: 1.0e-3}}
strategies:
  full-replay: {{adapter: full, data: {{replay: {{train: {general}, ratio: 0.3}}}}}}
  lora: {{adapter: lora}}
eval: {{suites: [heldout, ppl], limit: 4, ppl_file: {general}, max_new_tokens: 4}}
""")
    return spec


def test_spec_strategies_validate_before_anything_trains(spec_file: Path) -> None:
    recipes = strategy_recipes(load_spec(spec_file))
    assert [r.adapter for r in recipes.values()] == ["full", "lora"]
    assert all(r.train.log_every == 1 and r.train.max_steps == 2 for r in recipes.values())
    bad = spec_file.read_text().replace("lora: {adapter: lora}", "lora: {adapter: lora, data: {replay: {train: x}}}")
    spec_file.write_text(bad)
    with pytest.raises(UserError, match="data.replay"):
        strategy_recipes(load_spec(spec_file))  # replay on an adapter: refused up front


def test_compare_writes_the_table_and_resumes(spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the child `python -m tunesmith train` runs this checkout
    folder = run_comparison(spec_file)
    rows = list(csv.DictReader((folder / "comparison.csv").open()))
    assert [r["strategy"] for r in rows] == ["base (untrained)", "full-replay", "lora"]
    full, lora = rows[1], rows[2]
    assert int(full["trainable_params"]) > 3 * int(lora["trainable_params"]) > 0  # 112,448 vs LoRA r16: 32,768
    assert int(full["replay_tokens"]) > 0 and int(lora["replay_tokens"]) == 0
    assert float(full["peak_rss_mib"]) > 100 and float(lora["tokens_per_s"]) > 0
    assert full["ppl_change"] and float(full["task_loss"]) != float(rows[0]["task_loss"])
    assert (folder / "comparison.png").stat().st_size > 10_000 and "| lora |" in (folder / "comparison.md").read_text()
    measure = folder / "measures" / "lora.json"
    stamp = measure.stat().st_mtime_ns
    (folder / "runs" / "lora" / "eval.json").unlink()  # as if interrupted after training, before evaluating
    run_comparison(spec_file)
    assert measure.stat().st_mtime_ns == stamp  # not retrained
    assert (folder / "runs" / "lora" / "eval.json").is_file()
    assert os.path.getsize(folder / "comparison.csv") > 0
