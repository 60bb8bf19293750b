"""The dashboard in Debian's headless Chromium, for the screenshot script and the browser tests.

Nothing here downloads a browser: Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver (the
Debian `chromium` and `chromium-driver` packages) and Selenium Manager is kept offline.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage")


def missing_browser() -> str | None:
    """Why the headless browser cannot run here (a reason to skip), or None when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} not found: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install selenium"
    return None


def chromium(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium WebDriver from the Debian packages."""
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def open_with_token(driver: Any, url: str, token: str) -> None:
    """Open the dashboard as its printed URL (`url?token=T`) once: the server keeps the token as a cookie and
    sends the browser on to `url`, so later pages open without it."""
    from urllib.parse import quote

    driver.get(f"{url}?token={quote(token, safe='')}")
    deadline = time.monotonic() + 30
    while "token=" in driver.current_url:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the dashboard at {url} did not take its token")
        time.sleep(0.05)


def serve_in_thread(app: Any) -> tuple[str, Any]:
    """`app` on a free loopback port in a daemon thread: its base URL and the uvicorn server (set
    `server.should_exit = True` to stop it)."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start within 30 s")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/", server
