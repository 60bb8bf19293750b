"""The dashboard over run folders that are damaged, missing or made by `compare`: one bad folder is one
damaged row (never a 500 for the whole table), an unknown run is a 404, the icon is served, a comparison's
runs show the wall time the comparison measured, and chart titles name the data they measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ui_fixtures import local_client

from tunesmith.ui.app import create_app
from tunesmith.ui.views import run_row

STARTED, ENDED = "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:30+00:00"


def _run(folder: Path, **fields: Any) -> Path:
    """A run folder whose run.json has the fields `tunesmith train` writes, overridden by `fields`."""
    folder.mkdir(parents=True)
    record = {"name": folder.name, "status": "done", "recipe": {}, "base_model": "base", "method": "sft",
              "adapter": "lora", "started": STARTED, "ended": ENDED, "state": {"step": 4}, **fields}
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_one_damaged_run_folder_is_one_damaged_row(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs / "good")
    _run(runs / "bad-state", state=[1, 2])
    _run(runs / "bad-time", started="yesterday")
    (_run(runs / "bad-eval") / "eval.json").write_text(json.dumps({"results": [1, 2]}))
    (_run(runs / "bad-delta") / "eval.json").write_text(json.dumps({"results": {}, "deltas": [{"change": "x"}]}))
    client = local_client(create_app(runs), raise_server_exceptions=False)
    answer = client.get("/api/runs")
    assert answer.status_code == 200
    rows = {r["name"]: r for r in answer.json()["runs"]}
    assert rows["good"]["status"] == "done" and rows["good"]["steps"] == 4 and rows["good"]["wall_time_s"] == 90.0
    assert {n for n, r in rows.items() if r["status"] == "damaged"} == {"bad-state", "bad-time", "bad-eval", "bad-delta"}
    assert "'state'" in rows["bad-state"]["error"] and "'started'" in rows["bad-time"]["error"]
    assert "eval.json: field 'results'" in rows["bad-eval"]["error"]
    assert "eval.json: field 'deltas[0]'" in rows["bad-delta"]["error"]
    page = client.get("/api/runs/bad-eval")
    assert page.status_code == 200 and page.json()["row"]["status"] == "damaged"
    samples = _run(runs / "bad-samples")  # read by the run's page only (its verdicts and regressions)
    (samples / "eval.json").write_text(json.dumps({"results": {"hellaswag": {"acc_norm": 0.5, "n": 4}}}))
    (samples / "eval_samples.jsonl").write_text('[1, 2]\n{"suite": 3}\n')
    page = client.get("/api/runs/bad-samples")
    assert page.status_code == 200 and "is damaged" in page.json()["row"]["error"]


def test_numbers_the_page_draws_are_numbers_or_nothing(tmp_path: Path) -> None:
    """Whatever run.json's reader lets through, the row hands the page numbers or None (it calls toFixed)."""
    from tunesmith.runs.record import RunRecord

    record = RunRecord(path=tmp_path, name="odd", status="done", recipe={}, base_model="b", method="sft",
                       adapter="lora", started=STARTED, ended=ENDED,
                       state={"step": "four", "peak_memory_mib": "lots", "best_eval_loss": True})
    row = run_row(record)
    assert (row["steps"], row["peak_memory_mib"], row["best_eval_loss"]) == (None, None, None)


def test_unknown_runs_and_comparisons_are_404(tmp_path: Path) -> None:
    client = local_client(create_app(tmp_path / "runs"))
    for path in ("/api/runs/nope", "/api/runs/nope/metrics", "/api/comparisons/nope"):
        answer = client.get(path)
        assert answer.status_code == 404 and "no " in answer.json()["error"]
    assert client.post("/api/runs/nope/v1/chat/completions", json={"messages": []}).status_code == 404
    assert client.get("/api/runs/.hidden").status_code == 400  # not a run name at all: still the user's mistake


def test_the_icon_is_served_and_linked(tmp_path: Path) -> None:
    client = local_client(create_app(tmp_path / "runs"))
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg") and 'rel="icon" href="/static/favicon.svg"' in client.get("/").text


def test_a_compared_runs_wall_time_is_the_comparisons(tmp_path: Path) -> None:
    """run.json's start and end (whole seconds, set after imports) and compare's measure of the whole `train`
    process differ; the dashboard shows the comparison's for its runs, so every page agrees."""
    folder = tmp_path / "cmp"
    run = _run(folder / "runs" / "lora")
    (folder / "measures").mkdir()
    (folder / "measures" / "lora.json").write_text(json.dumps({"wall_seconds": 97.4, "peak_rss_mib": 300.0}))
    from tunesmith.runs.record import read_run

    row = run_row(read_run(run))
    assert (row["wall_time_s"], row["wall_time_source"]) == (97.4, "compare")
    alone = run_row(read_run(_run(tmp_path / "runs" / "lora")))
    assert (alone["wall_time_s"], alone["wall_time_source"]) == (90.0, "run.json")


@pytest.mark.parametrize("ppl_file, label", [("data/wiki.txt", "text perplexity change vs base (wiki.txt)"),
                                             (None, "text perplexity change vs base")])
def test_the_perplexity_chart_names_the_text_it_measured(tmp_path: Path, ppl_file: str | None, label: str) -> None:
    folder = tmp_path / "runs" / "cmp"
    (folder / "logs").mkdir(parents=True)
    spec = {"name": "cmp", "recipe": {"model": "m"}, "strategies": {"lora": {}}}
    if ppl_file:
        spec["eval"] = {"ppl_file": ppl_file}
    (folder / "spec.yaml").write_text(json.dumps(spec))
    panels = local_client(create_app(tmp_path / "runs")).get("/api/comparisons/cmp").json()["panels"]
    assert {p["key"]: p["label"] for p in panels}["ppl_change"] == label


def test_a_damaged_comparison_is_a_message_not_a_500(tmp_path: Path) -> None:
    folder = tmp_path / "cmp"
    (folder / "logs").mkdir(parents=True)
    (folder / "spec.yaml").write_text(json.dumps({"name": "cmp", "recipe": {"model": "m"}, "strategies": {"lora": {}}}))
    (_run(folder / "runs" / "lora") / "eval.json").write_text(json.dumps({"results": {"heldout": {"loss": 2.0}}}))
    (folder / "measures").mkdir()
    (folder / "measures" / "lora.json").write_text(json.dumps({"wall_seconds": "slow", "peak_rss_mib": [1]}))
    client = local_client(create_app(folder / "runs"), raise_server_exceptions=False)
    page = client.get("/api/comparisons/cmp")
    assert page.status_code == 200
    lora = page.json()["rows"][1]
    assert lora["peak_rss_mib"] is None and lora["task_loss"] == 2.0  # a chart draws numbers or nothing
    (folder / "base").mkdir()
    (folder / "base" / "eval.json").write_text(json.dumps({"results": [1]}))  # the base model's evaluation
    broken = client.get("/api/comparisons/cmp")
    assert broken.status_code == 400 and "holds a damaged file" in broken.json()["error"]
