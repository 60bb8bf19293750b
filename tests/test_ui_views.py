"""The dashboard's evaluation and comparison views in Debian's headless Chromium, each checked against the
files it shows: judge verdicts and regressions against eval.json / eval_samples.jsonl, the comparison table
and charts against `compare`'s own rows (and the comparison.csv it wrote), peak memory and the side by side
against run.json, and the launch form's --nproc field against the CLI's messages."""

from __future__ import annotations

import csv
import json
import resource
from pathlib import Path

import httpx
import pytest
import yaml
from ui_eval_fixtures import build_comparison, eval_data_dir, evaluate_with_judge, judge_app
from ui_fixtures import BEARER, BROWSER_TOKEN, tiny_model_and_data, tiny_recipe

from tunesmith.compare.rows import comparison_rows
from tunesmith.compare.table import cell
from tunesmith.evaluate.forgetting import change_text
from tunesmith.ui.access import Access
from tunesmith.ui.app import create_app
from tunesmith.ui.headless import chromium, missing_browser, open_with_token, serve_in_thread

REPO = Path(__file__).resolve().parents[1]
WHY = missing_browser()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"headless browser unavailable: {WHY}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    """A `compare` folder of two tiny strategies (lora, full), `full` evaluated with --base and a judge, and the
    dashboard over the comparison's runs folder in a headless Chromium."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path_factory.mktemp("ui-views")
    model, data = tiny_model_and_data(root)
    data_dir = eval_data_dir(root)
    with pytest.MonkeyPatch.context() as patch:
        folder = build_comparison(root, model, data, data_dir, patch)
        judge, judge_server = serve_in_thread(judge_app())
        evaluate_with_judge(folder / "runs" / "full", data_dir, judge + "v1", root)
        judge_server.should_exit = True
        patch.setenv("PYTHONPATH", str(REPO))
        patch.setenv("OMP_NUM_THREADS", "1")
        access = Access.build("127.0.0.1", None, BROWSER_TOKEN)
        url, server = serve_in_thread(create_app(folder / "runs", access=access, workdir=REPO))
        driver = chromium()
        try:
            open_with_token(driver, url, BROWSER_TOKEN)
            yield {"url": url, "folder": folder, "runs": folder / "runs", "model": model, "data": data,
                   "driver": driver,
                   "wait": WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,))}
        finally:
            driver.quit()
            server.should_exit = True


def _open(site, hash_: str, css: str):
    from selenium.webdriver.common.by import By

    site["driver"].get("about:blank")
    site["driver"].get(site["url"] + hash_)
    site["wait"].until(lambda d: d.find_elements(By.CSS_SELECTOR, css))
    return site["driver"]


def _cells(row) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    return {td.get_attribute("data-key"): td.text for td in row.find_elements(By.CSS_SELECTOR, "td[data-key]")}


def _samples(site, run: str) -> list[dict]:
    return [json.loads(line) for line in (site["runs"] / run / "eval_samples.jsonl").read_text().splitlines()]


def _lost(site, run: str) -> tuple[dict[str, dict], list[dict]]:
    """(base items by id, tuned HellaSwag items the base got right and the tuned got wrong, worst first),
    straight from eval_samples.jsonl."""
    samples = [s for s in _samples(site, run) if s["suite"] == "hellaswag"]
    before = {s["id"]: s for s in samples if s["model"] == "base"}
    lost = [s for s in samples if s["model"] == "tuned" and before[s["id"]]["correct"]["acc_norm"]
            and not s["correct"]["acc_norm"]]
    lost.sort(key=lambda s: (s["scores"][s["gold"]] - s["scores"][s["prediction_norm"]], s["id"]))
    return before, lost


def test_runs_table_shows_the_peak_memory_run_json_records(site) -> None:
    from selenium.webdriver.common.by import By

    driver = _open(site, "#/", "#runs-table tbody tr")
    peak_now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the runs trained in this process
    checked_forgetting = False
    for row in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr"):
        state = json.loads((site["runs"] / row.get_attribute("data-run") / "run.json").read_text())["state"]
        assert state["peak_memory_source"] == "process peak resident set"
        assert 50 < state["peak_memory_mib"] <= peak_now
        assert _cells(row)["peak_memory_mib"] == f"{state['peak_memory_mib']:.1f} MiB"
        evaluation = site["runs"] / row.get_attribute("data-run") / "eval.json"
        general = [d for d in json.loads(evaluation.read_text()).get("deltas", []) if d["general"]] \
            if evaluation.is_file() else []
        if general:  # the benchmark that lost most, with its paired interval from eval.json
            worst = min(general, key=lambda d: d["change"])
            assert _cells(row)["forgetting"] == f"{worst['suite']} {change_text(worst)}"  # worded as everywhere
            checked_forgetting = True
    assert checked_forgetting, "the fixture's evaluated run has a base to compare with"


def test_judge_verdicts_equal_eval_json_and_samples(site) -> None:
    from selenium.webdriver.common.by import By

    driver = _open(site, "#/run/full", "#mtbench-verdicts tbody tr")
    samples = _samples(site, "full")
    base = {s["id"]: s for s in samples if s["suite"] == "mtbench" and s["model"] == "base"}
    expected = [(s["id"], 1 + t, s["ratings"][t], base[s["id"]]["ratings"][t], s["pairwise"][t])
                for s in samples if s["suite"] == "mtbench" and s["model"] == "tuned" for t in (0, 1)]
    shown = [(c["id"], int(c["turn"]), float(c["rating"]), float(c["base_rating"]), c["pairwise"]) for c in map(
        _cells, driver.find_elements(By.CSS_SELECTOR, "#mtbench-verdicts tbody tr"))]
    assert len(expected) == 16 and shown == expected
    assert {p for *_, p in expected} >= {"loss"}  # the tuned model's empty answers lose to the base's
    judge = json.loads((site["runs"] / "full" / "eval.json").read_text())["results"]
    summary = driver.find_element(By.ID, "judge-summary").text
    pair = judge["judge_pairwise"]
    assert f"mean rating {judge['judge']['score']:.2f} over {judge['judge']['rated']} of {judge['judge']['n']}" in summary
    assert f"{pair['wins']} won / {pair['losses']} lost / {pair['ties']} tied" in summary
    ratings = [float(e.text) for e in driver.find_elements(By.CSS_SELECTOR, "#judge-examples td[data-key=rating]")]
    assert ratings == [e["rating"] for e in judge["judge"]["examples"]] and len(ratings) == 2


def test_regressions_equal_the_items_lost_in_eval_samples(site) -> None:
    from selenium.webdriver.common.by import By

    before, lost = _lost(site, "full")
    assert len(lost) >= 2  # the fixture must lose items, or this test shows nothing
    driver = _open(site, "#/run/full", "#regressions-table tbody tr")
    rows = driver.find_elements(By.CSS_SELECTOR, "#regressions-table tbody tr")
    assert [r.get_attribute("data-id") for r in rows] == [s["id"] for s in lost]
    for row, item in zip(rows, lost):
        shown = _cells(row)
        assert (shown["suite"], shown["gold"]) == ("hellaswag", str(item["gold"]))
        assert (shown["base_prediction"], shown["prediction"]) == (
            str(before[item["id"]]["prediction_norm"]), str(item["prediction_norm"]))
    assert driver.find_element(By.ID, "regressions-count").text.startswith(f"{len(lost)} items")


def test_comparison_table_and_charts_equal_compare_output(site) -> None:
    from selenium.webdriver.common.by import By

    driver = _open(site, "#/", "a[data-comparison=cmp]")
    driver.find_element(By.CSS_SELECTOR, "a[data-comparison=cmp]").click()
    site["wait"].until(lambda d: d.find_elements(By.CSS_SELECTOR, "#comparison-table tbody tr"))
    rows = comparison_rows(site["folder"], ["lora", "full"])
    shown = [_cells(r) for r in driver.find_elements(By.CSS_SELECTOR, "#comparison-table tbody tr")]
    assert [s["strategy"] for s in shown] == ["base (untrained)", "lora", "full"]
    for row, cells in zip(rows, shown):
        assert cells == {key: cell(row.get(key), key) for key in cells}
    written = {r["strategy"]: r for r in csv.DictReader((site["folder"] / "comparison.csv").open())}
    assert shown[1]["peak_rss_mib"] == cell(float(written["lora"]["peak_rss_mib"]), "peak_rss_mib")
    assert shown[1]["task_loss"] == cell(float(written["lora"]["task_loss"]), "task_loss")  # lora: not re-evaluated
    for panel, error in (("task_loss", None), ("general_change_pts", "general_ci95_pts"), ("trainable_params", None)):
        svg = driver.find_element(By.ID, f"panel-{panel}")
        bars = {b.get_attribute("data-name"): b for b in svg.find_elements(By.CSS_SELECTOR, "rect.bar")}
        assert set(bars) == {r["strategy"] for r in rows[1:] if r.get(panel) is not None}
        scale = {k: float(svg.get_attribute("data-" + k)) for k in ("ymin", "ymax", "plot-top", "plot-height")}
        for row in rows[1:]:
            if row.get(panel) is None:
                continue
            bar = bars[row["strategy"]]
            assert float(bar.get_attribute("data-value")) == pytest.approx(row[panel], rel=1e-12)
            expected = row.get(error) if error else None  # the general change's interval is [low, high]
            drawn = [float(x) for x in bar.get_attribute("data-error").split(",")]
            assert drawn == pytest.approx(expected if isinstance(expected, list) else [expected or 0], rel=1e-12)
            top = float(bar.get_attribute("y")) if row[panel] >= 0 else None
            if top is not None:  # the drawn height, read back through the axis, is the value
                back = scale["ymin"] + (1 - (top - scale["plot-top"]) / scale["plot-height"]) * (scale["ymax"] - scale["ymin"])
                assert back == pytest.approx(row[panel], rel=1e-6, abs=1e-9)


def test_side_by_side_shows_both_runs_from_their_files(site) -> None:
    from selenium.webdriver.common.by import By

    driver = _open(site, "#/compare/lora/full", "#compare-table tr[data-field]")
    table = {r.get_attribute("data-field"): [td.text for td in r.find_elements(By.TAG_NAME, "td")]
             for r in driver.find_elements(By.CSS_SELECTOR, "#compare-table tr[data-field]")}
    runs = [json.loads((site["runs"] / n / "run.json").read_text()) for n in ("lora", "full")]
    assert table["adapter"] == ["lora", "full"]
    assert table["peak_memory_mib"] == [f"{r['state']['peak_memory_mib']:.1f} MiB" for r in runs]
    assert table["steps"] == [str(r["state"]["step"]) for r in runs]
    assert table["recipe.train.lr"] == ["0.001", "0.01"] and table["recipe.adapter"] == ['"lora"', '"full"']
    full_eval = json.loads((site["runs"] / "full" / "eval.json").read_text())["results"]
    lora_eval = json.loads((site["runs"] / "lora" / "eval.json").read_text())["results"]
    assert table["eval hellaswag acc_norm"][0].startswith(f"{100 * lora_eval['hellaswag']['acc_norm']:.1f}%")
    assert table["eval hellaswag acc_norm"][1].startswith(f"{100 * full_eval['hellaswag']['acc_norm']:.1f}%")
    assert table["regressions"] == ["—", str(len(_lost(site, "full")[1]))]  # only full was scored with --base
    measured = {r["strategy"]: r["train_wall_s"] for r in comparison_rows(site["folder"], ["lora", "full"])[1:]}
    for name in ("lora", "full"):  # one wall time: the comparison's, on the runs table and side by side alike
        row = httpx.get(f"{site['url']}api/runs/{name}", headers=BEARER).json()["row"]
        assert (row["wall_time_s"], row["wall_time_source"]) == (measured[name], "compare")


def test_launch_form_validates_nproc_and_passes_it_on(site) -> None:
    from selenium.webdriver.common.by import By

    def validate(nproc: str, grad_accum: int) -> str:
        recipe = tiny_recipe("two-procs", site["model"], site["data"], Path("x"), max_steps=400, grad_accum=grad_accum)
        driver.find_element(By.ID, "recipe-text").clear()
        driver.find_element(By.ID, "recipe-text").send_keys(yaml.safe_dump(recipe))
        driver.find_element(By.ID, "launch-nproc").clear()
        driver.find_element(By.ID, "launch-nproc").send_keys(nproc)
        driver.execute_script("document.getElementById('recipe-result').textContent = ''")
        driver.find_element(By.ID, "validate-button").click()
        site["wait"].until(lambda d: d.find_element(By.ID, "recipe-result").text)
        return driver.find_element(By.ID, "recipe-result").text

    driver = _open(site, "#/launch", "#launch-nproc")
    for bad in ("0", "99", "two"):
        assert validate(bad, 2).startswith("--nproc: give a whole number of training processes from 1 to 8")
    assert "train.grad_accum=1 cannot be split over 2 processes" in validate("2", 1)  # the CLI's own message
    assert validate("2", 2).startswith("valid: run two-procs on 2 processes")
    driver.find_element(By.ID, "launch-button").click()
    site["wait"].until(lambda d: d.current_url.endswith("#/run/two-procs"))
    state = httpx.get(site["url"] + "api/launches/two-procs", headers=BEARER).json()
    process = json.loads((site["runs"] / ".launches" / "two-procs" / "process.json").read_text())
    assert state["nproc"] == 2 and process["command"][-2:] == ["--nproc", "2"]
    assert process["command"][1:4] == ["-m", "tunesmith", "train"]
    site["wait"].until(lambda d: "(2 processes)" in d.find_element(By.ID, "process-nproc").text)
    if state["process"] == "running":
        httpx.post(site["url"] + "api/runs/two-procs/stop", json={}, headers=BEARER)  # SIGINT to the launch's whole process group
    site["wait"].until(lambda d: httpx.get(site["url"] + "api/launches/two-procs", headers=BEARER).json()["process"] != "running")

