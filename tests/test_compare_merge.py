"""`tunesmith compare` with a merge as a strategy: two trained LoRA strategies merged by TIES into a third,
evaluated and tabled like the others; a merge strategy that names no trained strategy, or mixes in recipe
keys, is refused before anything trains."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tunesmith.compare import run_comparison
from tunesmith.compare.spec import load_spec, merge_strategies, strategy_recipes
from tunesmith.errors import UserError
from tunesmith.runs import read_run
from tunesmith.testing.tiny import save_tiny

REPO = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, merge: str) -> Path:
    rows = [{"instruction": f"add {i} and 1", "output": str(i + 1)} for i in range(40)]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = save_tiny("llama", tmp_path / "base", vocab_size=300, texts=[r["instruction"] for r in rows])
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
name: m
out: {tmp_path / 'out'}
recipe:
  model: {model}
  data: {{train: {data}, eval: 0.1, template: plain}}
  train: {{max_steps: 2, batch_size: 4, max_seq_len: 64, threads: 1, lr: 1.0e-3}}
strategies:
  lora: {{adapter: lora}}
  lora-fast: {{adapter: lora, train: {{lr: 1.0e-2}}}}
  both: {merge}
eval: {{suite: [heldout], limit: 4, max_new_tokens: 4}}
""")
    return spec


def test_a_merge_strategy_is_merged_evaluated_and_tabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the child `python -m tunesmith train` runs this checkout
    folder = run_comparison(_spec(tmp_path, "{merge: {runs: [lora, lora-fast], method: ties, density: 0.7}}"))
    rows = list(csv.DictReader((folder / "comparison.csv").open()))
    assert [r["strategy"] for r in rows] == ["base (untrained)", "lora", "lora-fast", "both"]
    assert rows[3]["task_loss"] and float(rows[3]["task_loss"]) > 0 and "| both |" in (folder / "comparison.md").read_text()
    merged = read_run(folder / "runs" / "both")
    assert merged.extra["merge"]["method"] == "ties" and merged.extra["merge"]["density"] == 0.7
    assert [p["name"] for p in merged.extra["merge"]["parents"]] == ["lora", "lora-fast"]
    assert json.loads((folder / "measures" / "both.json").read_text())["merged_from"] == ["lora", "lora-fast"]


@pytest.mark.parametrize("merge,why", [
    ("{merge: {runs: [lora, lora-fsat], method: ties}}", r"'lora-fsat', which is not a trained strategy.*did you mean 'lora-fast'"),
    ("{merge: {runs: [lora, lora-fast], method: ties}, adapter: lora}", "holds only `merge`"),
    ("{merge: {runs: [lora, lora-fast], method: tie}}", "did you mean 'ties'"),
    ("{merge: {runs: [lora], method: ties}}", "runs"),
])
def test_bad_merge_strategies_are_refused_up_front(tmp_path: Path, merge: str, why: str) -> None:
    spec = load_spec(_spec(tmp_path, merge))
    assert list(strategy_recipes(spec)) == ["lora", "lora-fast"]  # the merge has no recipe of its own
    with pytest.raises(UserError, match=why):
        merge_strategies(spec)
