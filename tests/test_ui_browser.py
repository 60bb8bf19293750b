"""The dashboard driven in Debian's headless Chromium: opened through its token URL, the runs table, a curve
against metrics.jsonl, the did-you-mean of a bad recipe, a run launched from the page that survives a reload,
and the chat pane."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml
from ui_fixtures import BEARER, BROWSER_TOKEN, tiny_model_and_data, tiny_recipe

from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.train.loop import train
from tunesmith.ui.access import Access
from tunesmith.ui.app import create_app
from tunesmith.ui.headless import chromium, missing_browser, open_with_token, serve_in_thread

REPO = Path(__file__).resolve().parents[1]
WHY = missing_browser()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"headless browser unavailable: {WHY}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    """Two finished tiny runs, the dashboard over them on a loopback port with a token, and a headless Chromium
    that opened it through its token URL."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path_factory.mktemp("ui-browser")
    model, data = tiny_model_and_data(root)
    runs = root / "runs"
    for name, lr in (("alpha", 1e-3), ("beta", 3e-3)):
        train(recipe_from_dict(tiny_recipe(name, model, data, runs, lr=lr)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(REPO))  # launched `python -m tunesmith` runs this checkout's code
        patch.setenv("OMP_NUM_THREADS", "1")
        access = Access.build("127.0.0.1", None, BROWSER_TOKEN)
        url, server = serve_in_thread(create_app(runs, access=access, workdir=REPO))
        driver = chromium()
        try:
            open_with_token(driver, url, BROWSER_TOKEN)
            yield {"url": url, "runs": runs, "model": model, "data": data, "driver": driver,
                   "wait": WebDriverWait(driver, 120, ignored_exceptions=(StaleElementReferenceException,))}
        finally:
            driver.quit()
            server.should_exit = True


def _open(site, hash_: str, css: str):
    from selenium.webdriver.common.by import By

    site["driver"].get("about:blank")  # a fresh page load, even when only the hash would change
    site["driver"].get(site["url"] + hash_)
    site["wait"].until(lambda d: d.find_elements(By.CSS_SELECTOR, css))
    return site["driver"]


def test_runs_table_lists_the_runs_and_sorts(site) -> None:
    from selenium.webdriver.common.by import By

    driver = _open(site, "#/", "#runs-table tbody tr")
    names = [r.get_attribute("data-run") for r in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
    assert sorted(names) == ["alpha", "beta"]
    best = {n: min(r["eval_loss"] for r in read_metrics(site["runs"] / n / "metrics.jsonl") if "eval_loss" in r)
            for n in names}
    driver.find_element(By.CSS_SELECTOR, "th[data-key=best_eval_loss]").click()
    ordered = [r.get_attribute("data-run") for r in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
    assert ordered == sorted(best, key=best.get)
    driver.find_element(By.ID, "runs-filter").send_keys("bet")
    shown = [r.get_attribute("data-run") for r in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
    assert shown == ["beta"]


def _flat(points: list[tuple[float, float]]) -> list[float]:
    """(x, y) pairs as one flat list: pytest.approx compares flat sequences only (nested ones are a TypeError)."""
    return [coordinate for point in points for coordinate in point]


def _drawn_points(driver, svg_id: str, series: str) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(data points from the circles, values read back from the polyline's pixels through the axes)."""
    from selenium.webdriver.common.by import By

    svg = driver.find_element(By.ID, svg_id)
    scale = {k: float(svg.get_attribute("data-" + k)) for k in
             ("xmin", "xmax", "ymin", "ymax", "plot-left", "plot-top", "plot-width", "plot-height")}
    group = svg.find_element(By.CSS_SELECTOR, f'g.series[data-name="{series}"]')
    dots = [(float(c.get_attribute("data-step")), float(c.get_attribute("data-value")))
            for c in group.find_elements(By.TAG_NAME, "circle")]
    pixels = [tuple(map(float, p.split(","))) for p in group.find_element(By.TAG_NAME, "polyline").get_attribute("points").split()]
    back = [(scale["xmin"] + (x - scale["plot-left"]) / scale["plot-width"] * (scale["xmax"] - scale["xmin"]),
             scale["ymin"] + (1 - (y - scale["plot-top"]) / scale["plot-height"]) * (scale["ymax"] - scale["ymin"]))
            for x, y in pixels]
    return dots, back


def test_loss_curve_points_equal_metrics_jsonl(site) -> None:
    driver = _open(site, "#/run/alpha", "#loss-chart-svg g.series")
    records = read_metrics(site["runs"] / "alpha" / "metrics.jsonl")
    for key in ("loss", "eval_loss"):
        expected = [(r["step"], r[key]) for r in records if key in r]
        dots, back = _drawn_points(driver, "loss-chart-svg", key)
        assert _flat(dots) == pytest.approx(_flat(expected), rel=1e-9)
        assert _flat(back) == pytest.approx(_flat(expected), rel=1e-6, abs=1e-6)


def test_a_recipe_typo_shows_did_you_mean(site) -> None:
    from selenium.webdriver.common.by import By

    driver = _open(site, "#/launch", "#recipe-text")
    driver.find_element(By.ID, "recipe-text").send_keys("name: typo\nmodel: m\ndata: {train: d}\ntrain: {lerning_rate: 1}\n")
    driver.find_element(By.ID, "validate-button").click()
    site["wait"].until(lambda d: "did you mean" in d.find_element(By.ID, "recipe-result").text)
    assert "train.lerning_rate: unknown key; did you mean 'train.lr'?" in driver.find_element(By.ID, "recipe-result").text


def test_schema_form_validates_through_the_same_messages(site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = _open(site, "#/launch", "#recipe-mode")
    Select(driver.find_element(By.ID, "recipe-mode")).select_by_value("form")
    driver.find_element(By.NAME, "name").send_keys("from-form")
    driver.find_element(By.NAME, "model").send_keys(str(site["model"]))
    driver.find_element(By.NAME, "data.train").send_keys(str(site["data"]))
    driver.find_element(By.NAME, "train.batch_size").send_keys("0")
    driver.find_element(By.ID, "validate-button").click()
    site["wait"].until(lambda d: "train.batch_size" in d.find_element(By.ID, "recipe-result").text)
    driver.find_element(By.NAME, "train.batch_size").clear()
    driver.find_element(By.NAME, "train.batch_size").send_keys("4")
    driver.find_element(By.ID, "validate-button").click()
    site["wait"].until(lambda d: "valid: run from-form" in d.find_element(By.ID, "recipe-result").text)


def test_a_launched_run_survives_a_reload_and_finishes(site) -> None:
    from selenium.webdriver.common.by import By

    recipe = tiny_recipe("launched", site["model"], site["data"], Path("ignored"), max_steps=12, eval_every=6)
    driver = _open(site, "#/launch", "#recipe-text")
    driver.find_element(By.ID, "recipe-text").send_keys(yaml.safe_dump(recipe))
    driver.find_element(By.ID, "launch-button").click()
    site["wait"].until(lambda d: d.current_url.endswith("#/run/launched"))
    state = httpx.get(site["url"] + "api/launches/launched", headers=BEARER).json()
    assert state["process"] == "running"  # the reload below happens mid-run
    site["wait"].until(lambda d: d.find_elements(By.CSS_SELECTOR, "#train-log"))
    driver.refresh()
    site["wait"].until(lambda d: d.find_elements(By.CSS_SELECTOR, "#process-state"))
    site["wait"].until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1 [data-status=done]"))
    # the process exits a moment after writing "done"; once it has, the page stops polling and redrawing
    site["wait"].until(lambda d: d.find_element(By.ID, "process-state").text == "exited")
    run = json.loads((site["runs"] / "launched" / "run.json").read_text())
    assert run["status"] == "done" and run["state"]["step"] == 12
    assert run["recipe"]["output"] == str(site["runs"].resolve())  # forced into the runs folder
    records = read_metrics(site["runs"] / "launched" / "metrics.jsonl")
    dots, _ = _drawn_points(driver, "loss-chart-svg", "loss")
    assert _flat(dots) == pytest.approx(_flat([(r["step"], r["loss"]) for r in records if "loss" in r]))
    assert "run folder" in driver.find_element(By.ID, "train-log").text
    names = [r.get_attribute("data-run") for r in _open(site, "#/", "#runs-table tbody tr").find_elements(
        By.CSS_SELECTOR, "#runs-table tbody tr")]
    assert "launched" in names


def test_the_chat_pane_answers(site) -> None:
    from selenium.webdriver.common.by import By

    driver = _open(site, "#/run/beta", "#chat-input")
    driver.find_element(By.ID, "chat-max-tokens").clear()
    driver.find_element(By.ID, "chat-max-tokens").send_keys("10")
    driver.find_element(By.ID, "chat-input").send_keys("Name a colour.")
    driver.find_element(By.ID, "chat-with-base").click()
    driver.find_element(By.ID, "chat-send").click()
    for column in ("chat-tuned", "chat-base"):
        site["wait"].until(lambda d, c=column: d.find_elements(By.CSS_SELECTOR, f"#{c} .bubble.assistant"))
    shown = driver.find_element(By.CSS_SELECTOR, "#chat-tuned .bubble.assistant").text
    messages = [{"role": "user", "content": "Name a colour."}]
    answer = httpx.post(site["url"] + "api/runs/beta/v1/chat/completions", timeout=120, headers=BEARER,
                        json={"messages": messages, "max_tokens": 10}).json()["choices"][0]["message"]["content"]
    assert shown == (answer.strip() or "(empty answer)")
    assert driver.find_element(By.CSS_SELECTOR, "#chat-base .bubble.user").text == "Name a colour."
    time.sleep(0)  # the conversation stays on the page: a second question continues it


def test_the_token_url_signs_in_and_scripts_cannot_read_the_token(site) -> None:
    driver = site["driver"]
    (cookie,) = [c for c in driver.get_cookies() if c["name"].startswith("tunesmith-token")]
    assert cookie["value"] == BROWSER_TOKEN and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    driver = _open(site, "#/", "#runs-table tbody tr")
    assert "token" not in driver.current_url and BROWSER_TOKEN not in driver.execute_script("return document.cookie")
    assert httpx.get(site["url"] + "api/runs").status_code == 401  # without it: nothing


def test_a_damaged_run_folder_is_one_row_saying_why(site) -> None:
    from selenium.webdriver.common.by import By

    bad = site["runs"] / "zz-damaged"
    bad.mkdir()
    (bad / "run.json").write_text(json.dumps({"name": "zz-damaged", "status": "done", "state": [1, 2]}))
    try:
        driver = _open(site, "#/", "#runs-table tbody tr[data-run=zz-damaged]")
        rows = {r.get_attribute("data-run"): r for r in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")}
        assert {"alpha", "beta", "zz-damaged"} <= set(rows)
        assert rows["zz-damaged"].find_element(By.CSS_SELECTOR, "[data-status]").text == "damaged"
        assert "run.json" in rows["zz-damaged"].find_element(By.CSS_SELECTOR, "td[data-key=error]").text
        assert rows["alpha"].find_element(By.CSS_SELECTOR, "[data-status]").text == "done"
    finally:
        (bad / "run.json").unlink()
        bad.rmdir()


def test_counts_of_one_are_singular(site) -> None:
    driver = _open(site, "#/", "#runs-table")
    text = driver.execute_script("""return regressionSection({file: "eval_samples.jsonl", with_base: true, total: 1,
        rows: [{suite: "hellaswag", id: "7"}]}).querySelector("#regressions-count").textContent""")
    assert text.startswith("1 item the base model got right")
    assert driver.execute_script("return plural(2, 'item')") == "2 items"


def _long_run(folder: Path) -> None:
    """A run named and evaluated as real ones are: long names, a GGUF base, changes told in words, a note."""
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({
        "name": folder.name, "status": "done", "recipe": {}, "method": "sft", "adapter": "lora",
        "base_model": "/root/.cache/tunesmith/gguf/SmolLM2-135M-Instruct-Q4_1-converted-fp32",
        "state": {"step": 20, "peak_memory_mib": 1234.5}, "started": "2026-01-01T00:00:00+00:00",
        "ended": "2026-01-01T00:36:30+00:00"}))
    delta = {"suite": "hellaswag", "metric": "acc_norm", "base": 0.40, "tuned": 0.35, "change": -5.0, "unit": "pts",
             "general": True, "improved": False, "ci95": [-14.8, 4.8], "p_value": 1.0, "n": 80}
    (folder / "eval.json").write_text(json.dumps({
        "results": {"heldout": {"loss": 2.01, "exact_match": 0.12, "n": 100}, "hellaswag": {"acc_norm": 0.35, "n": 80},
                    "mtbench": {"score": 3.2, "n": 80, "wins": 10, "losses": 30, "ties": 40, "failures": {"timeout": 2}}},
        "base_results": {"heldout": {"loss": 2.07}, "hellaswag": {"acc_norm": 0.40}}, "deltas": [delta]}))


def test_tables_fit_a_1400px_window(site) -> None:
    """Long run names, base paths and changes told in words wrap; the tables fit their box, not overflow it."""
    import shutil

    name = "smollm2-135m-instruct-lora-alpaca-r16-lr1e-4-seed1"
    _long_run(site["runs"] / name)
    try:
        site["driver"].set_window_size(1400, 1000)
        for hash_, table in (("#/", "#runs-table"), (f"#/run/{name}", "#eval-table")):
            driver = _open(site, hash_, f"{table} tbody tr")
            sticking_out = driver.execute_script(
                "const t = document.querySelector(arguments[0]); "
                "return t.getBoundingClientRect().right - t.parentElement.getBoundingClientRect().right", table)
            assert sticking_out <= 0, f"{table} on {hash_} sticks {sticking_out:.0f} px out of its box"
            assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        shutil.rmtree(site["runs"] / name)
