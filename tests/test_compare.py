"""`tunesmith compare`: strategies trained and evaluated alike, the trade-off table in markdown/CSV/PNG (the
general change paired with the base on the same items, as `eval --base` gives it), an interrupted comparison
resuming without retraining finished strategies, and the spec: its keys, errors, folder and documentation."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from tunesmith.compare import run_comparison
from tunesmith.compare.run_files import train_tokens_per_second
from tunesmith.compare.spec import load_spec, strategy_recipes
from tunesmith.errors import UserError
from tunesmith.testing.tiny import save_tiny

REPO = Path(__file__).resolve().parents[1]


def test_throughput_arithmetic() -> None:
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
    bench = tmp_path / "bench"
    bench.mkdir()
    items = [{"activity_label": "Counting", "ctx_a": f"add {i} and 1 makes", "ctx_b": "the", "label": i % 4,
              "endings": [f"answer {i + k}" for k in range(4)]} for i in range(12)]
    (bench / "hellaswag_tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
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
eval: {{suites: [heldout, hellaswag, ppl], limit: 4, ppl_file: {general}, data_dir: {bench}, max_new_tokens: 4}}
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


def test_compare_writes_the_table_and_resumes(spec_file: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the child `python -m tunesmith train` runs this checkout
    folder = run_comparison(spec_file)
    assert folder == spec_file.parent / "out"  # `out` is the comparison folder itself
    log = capsys.readouterr().err
    assert "base model: hellaswag done" in log and "(base)" not in log  # the base is every strategy's, not lora's
    rows = list(csv.DictReader((folder / "comparison.csv").open()))
    _check_paired_general_change(folder, rows)
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


def _check_paired_general_change(folder: Path, rows: list[dict[str, str]]) -> None:
    """Each strategy's HellaSwag change is the paired one over the same 4 items: Tango's interval, not ±42 pts."""
    from tunesmith.evaluate.forgetting import paired_by_item
    from tunesmith.evaluate.samples import read_samples

    base = [r for r in read_samples(folder / "base" / "eval_samples.jsonl") if r["suite"] == "hellaswag"]
    assert len(base) == 4 and {r["model"] for r in base} == {"base"}
    for row in rows[1:]:
        tuned = [r for r in read_samples(folder / "runs" / row["strategy"] / "eval_samples.jsonl")
                 if r["suite"] == "hellaswag" and r["model"] == "tuned"]
        paired = paired_by_item("hellaswag", "acc_norm", {"hellaswag": tuned}, {"hellaswag": base})
        assert paired is not None and row["general"] == "hellaswag acc_norm"
        assert float(row["general_change_pts"]) == pytest.approx(100 * paired.change)
        low, high = float(row["general_ci95_low_pts"]), float(row["general_ci95_high_pts"])
        assert (low, high) == pytest.approx((100 * paired.low, 100 * paired.high))
        assert float(row["general_p"]) == pytest.approx(paired.p_value)
        assert row["general_significant"] == str(paired.significant)


def _write_spec(tmp_path: Path, text: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return spec


SPEC = "name: x\nrecipe: {model: m}\nstrategies: {lora: {adapter: lora}}\n"


def test_spec_takes_the_recipes_spelling_and_names_mistakes_with_did_you_mean(tmp_path: Path) -> None:
    for key in ("suite", "suites"):
        spec = load_spec(_write_spec(tmp_path, SPEC + f"eval: {{{key}: [heldout, hellaswag]}}\n"))
        assert spec.eval.suite == ["heldout", "hellaswag"]
    with pytest.raises(UserError, match=r"eval\.suit: unknown key; did you mean 'eval\.suite'\?"):
        load_spec(_write_spec(tmp_path, SPEC + "eval: {suit: [heldout]}\n"))
    with pytest.raises(UserError, match=r"strategy: unknown key; did you mean 'strategies'\?"):
        load_spec(_write_spec(tmp_path, SPEC + "strategy: {}\n"))
    with pytest.raises(UserError, match=r"eval\.suite: 'helaswag' is not comparable \(did you mean 'hellaswag'\?\)"):
        load_spec(_write_spec(tmp_path, SPEC + "eval: {suite: [helaswag]}\n"))


def test_the_comparison_folder_is_where_the_dashboard_looks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.ui.comparisons import find_comparisons

    monkeypatch.chdir(tmp_path)
    assert load_spec(_write_spec(tmp_path, SPEC)).folder == Path("comparisons") / "x"
    named = load_spec(_write_spec(tmp_path, SPEC + "out: comparisons/y\n"))
    assert named.folder == Path("comparisons") / "y"  # not comparisons/y/x
    (named.folder / "logs").mkdir(parents=True)  # what `compare` writes first
    (named.folder / "spec.yaml").write_text(SPEC)
    (tmp_path / "runs").mkdir()
    assert find_comparisons(tmp_path / "runs") == {"y": (tmp_path / "comparisons" / "y").resolve()}


def test_compare_docs_are_generated_from_the_spec_schema() -> None:
    from tunesmith.compare.docs import render_compare_docs

    docs = (REPO / "docs" / "compare.md").read_text()
    assert docs == render_compare_docs(), "docs/compare.md is stale: run `tunesmith docs --compare > docs/compare.md`"
    for key in ("name", "out", "recipe", "strategies", "eval.suite", "eval.limit", "eval.data_dir", "eval.ppl_file"):
        assert f"| `{key}` |" in docs


SHIPPED = REPO / "recipes" / "compare" / "smollm2-forgetting.yaml"


def test_the_shipped_spec_works_from_a_fresh_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file it names is in the checkout or ../shared (nothing a bench script must first write to /tmp)."""
    import yaml

    shared = REPO.parent / "shared"
    if not (shared / "fixtures" / "smollm2-135m-instruct").is_dir() or not (shared / "data").is_dir():
        pytest.skip(f"the SmolLM2 fixture and data are not in {shared} (the shared folder beside the checkout)")
    monkeypatch.chdir(REPO)
    spec = load_spec(SHIPPED.relative_to(REPO))
    recipes = strategy_recipes(spec)
    raw = yaml.safe_load(SHIPPED.read_text())
    named = [raw["recipe"]["model"], raw["recipe"]["data"]["train"], spec.eval.data_dir, spec.eval.ppl_file,
             raw["strategies"]["full-replay"]["data"]["replay"]["train"]]
    missing = [p for p in named if not Path(p).exists()]
    assert not missing, f"the shipped spec names files a fresh checkout lacks: {missing}"
    assert all(r.model.endswith(".gguf") for r in recipes.values())
    assert spec.folder == Path("comparisons") / "smollm2-forgetting"
