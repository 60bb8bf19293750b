"""report.html from a handed-over folder: every value it shows comes out escaped (run folders are untrusted
input), the page needs nothing outside itself, and a template asking for a value nobody gave fails loudly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import pytest

from tunesmith.pages import render_page
from tunesmith.runs.report import write_report

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = "x' onmouseover='alert(2)"


def _hostile_folder(folder: Path) -> Path:
    """A run folder whose run.json, eval.json and eval_samples.jsonl carry markup where names and answers go."""
    (folder / "run.json").write_text(json.dumps({
        "name": f"run{SCRIPT}", "status": "done", "recipe": {}, "base_model": "some/model", "method": "sft",
        "adapter": "lora", "state": {"step": 2, "overfitting": SCRIPT}}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 3.0 / s}) + "\n" for s in (1, 2)))
    (folder / "eval.json").write_text(json.dumps({
        "target": {"name": "t", "model": SCRIPT, "adapter": SCRIPT}, "base": {"model": SCRIPT},
        "settings": {"limit": SCRIPT}, "base_results": {"hellaswag": {"acc_norm": 0.5}},
        "results": {"hellaswag": {"acc_norm": 0.25, "n": 4, "examples": [{"answer": SCRIPT}]},
                    "mtbench": {"score": 5.0, "n": 1, "categories": {SCRIPT: {"n": SCRIPT, "score": 5.0}}}},
        "gate": {"max_drop": 1.0, "failures": [SCRIPT], "notes": [SCRIPT]}}))
    samples = [{"suite": "hellaswag", "model": model, "id": BREAKOUT, "gold": SCRIPT, "prediction": SCRIPT,
                "correct": {"acc_norm": model == "base"}} for model in ("tuned", "base")]
    (folder / "eval_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return folder


def test_untrusted_values_come_out_escaped(tmp_path: Path) -> None:
    page = write_report(_hostile_folder(tmp_path)).read_text()
    assert "<script" not in page and "onmouseover='" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    # title, run table, target line, gate, examples, regression row and MT-Bench category: each escaped
    assert page.count(escaped) >= 12, page.count(escaped)
    assert "id='regression-hellaswag-x&#39; onmouseover=&#39;alert(2)'" in page


def test_the_page_needs_nothing_outside_itself(tmp_path: Path) -> None:
    page = write_report(_hostile_folder(tmp_path)).read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)  # loss, MT-Bench
    assert "<link" not in page and "http" not in page and "<style>" in page


def test_a_value_the_caller_did_not_give_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError, match="run_facts"):
        render_page("report.html.j2", title="t")
