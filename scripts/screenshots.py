"""Screenshots of each dashboard page, taken with Debian's headless Chromium (nothing downloads a browser).

    python scripts/screenshots.py --runs runs/ --out shots/        # serves that runs folder itself
    python scripts/screenshots.py --url 'http://127.0.0.1:7860/?token=T' --out shots/   # the URL `tunesmith ui` printed

Pages: the runs table (peak memory column), a run's page (the first run with judge verdicts or
regressions, else the first run: curves, eval tables, verdicts, regressions), two runs side by side, each
comparison `tunesmith compare` wrote (its table and charts), and the launch page twice (a recipe with a typo,
validated; a two-process launch whose grad_accum cannot split, validated). PNG files in --out. Not test
assets: regenerate them when the UI changes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tunesmith.ui.headless import chromium, open_with_token, serve_in_thread


def shoot(url: str, token: str, out: Path) -> list[Path]:
    """Screenshots of every page of the dashboard at `url` (its base, e.g. http://127.0.0.1:7860/), opened once
    through its token URL as a user would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out.mkdir(parents=True, exist_ok=True)
    driver = chromium()
    wait = WebDriverWait(driver, 60)
    shots = []
    open_with_token(driver, url, token)

    def save(name: str) -> None:
        time.sleep(0.5)
        driver.set_window_size(1400, 600)  # the page's own height, not the last window's
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(height + 140, 4000))
        path = out / f"{name}.png"
        driver.save_screenshot(str(path))
        shots.append(path)

    def take(name: str, hash_: str, ready: str) -> None:
        driver.get("about:blank")
        driver.get(url + hash_)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
        save(name)

    def launch(name: str, recipe: str, nproc: str, expect: str) -> None:
        driver.get("about:blank")
        driver.get(url + "#/launch")
        wait.until(lambda d: d.find_elements(By.ID, "recipe-text"))
        driver.find_element(By.ID, "recipe-text").send_keys(recipe)
        driver.find_element(By.ID, "launch-nproc").clear()
        driver.find_element(By.ID, "launch-nproc").send_keys(nproc)
        driver.find_element(By.ID, "validate-button").click()
        wait.until(lambda d: expect in d.find_element(By.ID, "recipe-result").text)
        save(name)

    try:
        take("runs", "#/", "#runs-table")
        names = [e.get_attribute("data-run") for e in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
        comparisons = [e.get_attribute("data-comparison") for e in driver.find_elements(By.CSS_SELECTOR, "a[data-comparison]")]
        if names:
            take("run", f"#/run/{_evaluated(url, token, names)}", "#loss-chart-svg")
        if len(names) >= 2:
            take("compare", f"#/compare/{names[0]}/{names[1]}", "#compare-svg")
        for name in comparisons:
            take(f"comparison-{name}", f"#/comparison/{name}", "#comparison-table")
        launch("launch", "name: typo\nmodel: m\ndata: {train: d}\ntrain: {lerning_rate: 1}\n", "1", "did you mean")
        launch("launch-nproc", "name: two\nmodel: m\ndata: {train: d}\n", "2", "cannot be split")
    finally:
        driver.quit()
    return shots


def _evaluated(url: str, token: str, names: list[str]) -> str:
    """The first run whose page has judge verdicts or regressions to show (else the first run)."""
    import httpx

    for name in names:
        page = httpx.get(f"{url}api/runs/{name}", timeout=30, headers={"Authorization": f"Bearer {token}"}).json()
        if (page.get("regressions") or {}).get("with_base") or (page.get("verdicts") or {}).get("mtbench_rows"):
            return name
    return names[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--url", default=None, help="a running dashboard's URL as `tunesmith ui` printed it "
                        "(with ?token=...) instead of serving --runs")
    parser.add_argument("--out", type=Path, default=Path("shots"))
    args = parser.parse_args()
    if args.url:
        parts = urlsplit(args.url)
        token = (parse_qs(parts.query).get("token") or [""])[0]
        if not token:
            parser.error("--url: give the whole URL `tunesmith ui` printed, with its ?token=...")
        url = f"{parts.scheme}://{parts.netloc}/"
    else:
        from tunesmith.ui.access import Access
        from tunesmith.ui.app import create_app
        from tunesmith.ui.guard import resolve_token

        token = resolve_token(None)
        url, _ = serve_in_thread(create_app(args.runs, access=Access.build("127.0.0.1", None, token)))
    for path in shoot(url, token, args.out):
        print(path)


if __name__ == "__main__":
    main()
