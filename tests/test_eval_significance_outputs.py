"""A change is coloured only when it is significant, in the console table, report.html and the dashboard's eval
table alike, and each says in words whether it is (all three read forgetting.change_text / change_trend)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tunesmith.evaluate.forgetting import Delta
from tunesmith.evaluate.stats import paired_change
from tunesmith.runs.report import eval_rows, write_report


def _pairs(n: int, both: int, gained: int, lost: int) -> tuple[list[bool], list[bool]]:
    base = [True] * both + [False] * gained + [True] * lost
    tuned = [True] * both + [True] * gained + [False] * lost
    return base + [False] * (n - len(base)), tuned + [False] * (n - len(tuned))


def _record() -> dict[str, Any]:
    """hellaswag -5.0 pts on 40 items (2 gained, 4 lost: not significant); mmlu -18.0 pts on 100 (significant)."""
    unsure = Delta("hellaswag", "acc_norm", 0.35, 0.30, paired_change(*_pairs(40, 10, 2, 4)))
    sure = Delta("mmlu", "acc", 0.60, 0.42, paired_change(*_pairs(100, 40, 2, 20)))
    results = {"hellaswag": {"acc_norm": 0.30, "n": 40}, "mmlu": {"acc": 0.42, "n": 100}}
    base = {"hellaswag": {"acc_norm": 0.35, "n": 40}, "mmlu": {"acc": 0.60, "n": 100}}
    return {"target": {"name": "t", "model": "m"}, "base": {"model": "m"}, "settings": {"limit": None},
            "results": results, "base_results": base, "deltas": [unsure.as_dict(), sure.as_dict()],
            "gate": {"max_drop": None, "failures": [], "notes": []}}


def test_rows_word_and_colour_by_significance() -> None:
    rows = {r["suite"]: r for r in eval_rows(_record())}
    assert rows["hellaswag"]["trend"] == "" and rows["mmlu"]["trend"] == "bad"
    assert re.fullmatch(r"-5\.0 pts, not significant \(95% CI -1\d\.\d\.\.\+\d\.\d, p=0\.\d\d\)", rows["hellaswag"]["change"])
    assert rows["mmlu"]["change"].startswith("-18.0 pts, significant (95% CI -27.3..-9.9")


def test_report_html_colours_only_the_significant_change(tmp_path: Path) -> None:
    (tmp_path / "eval.json").write_text(json.dumps(_record()))
    page = write_report(tmp_path).read_text()
    classes = dict((text, klass) for klass, text in re.findall(r"<td class='(\w*)'>([+-]\d+\.\d) pts, ", page))
    assert classes == {"-5.0": "", "-18.0": "bad"}
    assert "-5.0 pts, not significant (95% CI" in page and "-18.0 pts, significant (95% CI" in page

def test_console_table_colours_only_the_significant_change(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.commands.eval import print_table

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "300")
    print_table(_record())
    out = capsys.readouterr().out
    red = re.findall(r"\x1b\[31m([^\x1b]*)", out)
    assert red and all(text.startswith("-18.0 pts") for text in red), red
    assert "-5.0 pts, not significant" in out
