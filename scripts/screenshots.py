"""Screenshots of each dashboard page, taken with Debian's headless Chromium (nothing downloads a browser).

    python scripts/screenshots.py --runs runs/ --out shots/        # serves that runs folder itself
    python scripts/screenshots.py --url http://127.0.0.1:7860/ --out shots/

Pages: the runs table, the first two runs' pages, their side by side, the launch page (a recipe with a
typo, validated), written as PNG files into --out. Not test assets: regenerate them when the UI changes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tunesmith.ui.headless import chromium, serve_in_thread


def shoot(url: str, out: Path) -> list[Path]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out.mkdir(parents=True, exist_ok=True)
    driver = chromium()
    wait = WebDriverWait(driver, 60)
    shots = []

    def take(name: str, hash_: str, ready: str) -> None:
        driver.get(url + hash_)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
        time.sleep(0.5)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(max(height + 40, 600), 2400))
        path = out / f"{name}.png"
        driver.save_screenshot(str(path))
        shots.append(path)

    try:
        take("runs", "#/", "#runs-table")
        names = [e.get_attribute("data-run") for e in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]
        if names:
            take("run", f"#/run/{names[0]}", "#loss-chart-svg")
        if len(names) >= 2:
            take("compare", f"#/compare/{names[0]}/{names[1]}", "#compare-svg")
        driver.get(url + "#/launch")
        wait.until(lambda d: d.find_elements(By.ID, "recipe-text"))
        driver.find_element(By.ID, "recipe-text").send_keys("name: typo\nmodel: m\ndata: {train: d}\ntrain: {lerning_rate: 1}\n")
        driver.find_element(By.ID, "validate-button").click()
        wait.until(lambda d: "did you mean" in d.find_element(By.ID, "recipe-result").text)
        take_current = out / "launch.png"
        driver.save_screenshot(str(take_current))
        shots.append(take_current)
    finally:
        driver.quit()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--url", default=None, help="a running dashboard instead of serving --runs")
    parser.add_argument("--out", type=Path, default=Path("shots"))
    args = parser.parse_args()
    if args.url:
        url = args.url
    else:
        from tunesmith.ui.app import create_app

        url, _ = serve_in_thread(create_app(args.runs))
    for path in shoot(url, args.out):
        print(path)


if __name__ == "__main__":
    main()
