"""`tunesmith eval RUN --base` on a vision-language run (tiny random LLaVA): held-out loss, exact match and
contains on the held-out image questions for base and tuned, paired item by item with the benchmarks'
intervals; the answers are the model's own greedy answers (vision/generate.py, loaded independently); the
report shows the pictures with both models' answers, escaped, and embeds nothing but PNG data: URIs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.data.types import Conversation, Message
from tunesmith.evaluate.vision_heldout import contains
from tunesmith.runs.report import write_report

runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(tiny_llava: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = {**tiny_llava, "out": tmp_path_factory.mktemp("eval-vlm")}
    result = runner.invoke(app, ["eval", str(made["run"]), "--base", "--suite", "heldout", "--dtype", "fp32",
                                 "--max-new-tokens", "6", "--out", str(made["out"])])
    assert result.exit_code == 0, result.output
    return made


def _heldout_chats(run: Path) -> list[tuple[Conversation, str]]:
    from tunesmith.evaluate.heldout import heldout_from_run, prompt_and_answer
    from tunesmith.models.load import load_tokenizer
    from tunesmith.runs.targets import resolve_target

    target = resolve_target(str(run))
    heldout = heldout_from_run(target, load_tokenizer(target.tokenizer_source))
    out = []
    for example in heldout.examples:
        messages, reference = prompt_and_answer(example)
        out.append((Conversation(messages, example.images), reference))
    return out


def test_base_and_tuned_are_scored_on_image_questions_with_paired_intervals(evaluated: dict[str, Path]) -> None:
    from tunesmith.adapters.build import load_adapter
    from tunesmith.models.load import load_model
    from tunesmith.vision.generate import greedy_answers
    from tunesmith.vision.processor import load_processor

    run, out = evaluated["run"], evaluated["out"]
    record = json.loads((out / "eval.json").read_text())
    chats = _heldout_chats(run)
    processor = load_processor(str(evaluated["base"]))
    tuned = load_adapter(load_model(str(evaluated["base"]), dtype="fp32"), run / "adapter")
    base = load_model(str(evaluated["base"]), dtype="fp32")
    samples = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    for model, name, results in ((tuned, "tuned", record["results"]), (base, "base", record["base_results"])):
        want = greedy_answers(model, processor, [c for c, _ in chats], 6)
        got = [s["prediction"] for s in samples if s["model"] == name and s["suite"] == "heldout"]
        assert got == want
        scores = results["heldout"]
        assert scores["n"] == len(chats) == 6
        assert scores["exact_match"] == sum(a == r for a, (_, r) in zip(want, chats)) / len(chats)
        assert scores["contains"] == sum(contains(a, r) for a, (_, r) in zip(want, chats)) / len(chats)
        assert scores["loss"] > 0 and scores["tokens"] > 0 and len(scores["intervals"]["contains"]["ci95"]) == 2
    assert record["results"]["heldout"]["loss"] != record["base_results"]["heldout"]["loss"]
    deltas = {d["metric"]: d for d in record["deltas"] if d["suite"] == "heldout"}
    assert {"loss", "exact_match", "contains"} <= set(deltas)
    assert deltas["exact_match"]["ci95"] is not None and deltas["contains"]["paired"]["n"] == 6


def test_the_report_shows_pictures_with_both_answers(evaluated: dict[str, Path]) -> None:
    out = evaluated["out"]
    page = (out / "report.html").read_text()
    record = json.loads((out / "eval.json").read_text())
    examples = record["results"]["heldout"]["examples"]
    assert page.count("<img alt='held-out picture") == len(examples) == 4
    assert examples[0]["image"] in page and examples[0]["image"].startswith("data:image/png;base64,")
    base_answer = record["base_results"]["heldout"]["examples"][0]["prediction"]
    assert "Image questions" in page and "<th>base</th>" in page
    from html import escape
    assert escape(base_answer, quote=True) in page or escape(base_answer, quote=False) in page


def test_a_hostile_eval_json_embeds_no_other_picture_and_escapes_answers(evaluated: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    record = json.loads((evaluated["out"] / "eval.json").read_text())
    examples = record["results"]["heldout"]["examples"]
    examples[0]["image"] = "javascript:alert(1)"
    examples[1]["image"] = "data:image/png;base64,AAAA' onerror='alert(1)"
    examples[2]["prediction"] = "<script>alert(1)</script>"
    (tmp_path / "eval.json").write_text(json.dumps(record))
    page = write_report(tmp_path).read_text()
    assert "javascript:alert" not in page and "onerror='alert" not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<img alt='held-out picture") == 2


def test_contains_forgives_case_punctuation_and_articles() -> None:
    assert contains("It is a Red circle.", "a red circle")
    assert not contains("a red circles", "a red circle") and not contains("", "a red circle")
    assert not contains("anything", "")
    assert Conversation((Message("user", "x"),)).images == ()


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "hellaswag_val_500.jsonl").is_file(), reason="../shared/data is absent")
def test_text_benchmarks_run_on_the_vlm_with_text_only_prompts(evaluated: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", str(evaluated["run"]), "--base", "--suite", "hellaswag", "--data-dir",
                                 str(SHARED_DATA), "--limit", "4", "--dtype", "fp32", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["results"]["hellaswag"]["n"] == 4 and record["base_results"]["hellaswag"]["n"] == 4
    assert any(d["suite"] == "hellaswag" and d["ci95"] is not None for d in record["deltas"])
