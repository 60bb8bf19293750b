"""Run the server in this process on a free loopback port: what tests and bench/serve_load.py use, so they
talk to the real HTTP server (uvicorn) through the official client, not to an in-process shortcut."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from tunesmith.serve.engine import Engine
from tunesmith.serve.server import ServeOptions, build


@dataclass
class Running:
    url: str
    """Base URL of the OpenAI API, e.g. http://127.0.0.1:PORT/v1"""
    engine: Engine


@contextmanager
def local_server(options: ServeOptions, start_timeout_s: float = 60.0) -> Iterator[Running]:
    """Build the app for `options`, serve it on 127.0.0.1 in a thread, stop it on exit."""
    app, engine = build(options)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="tunesmith-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield Running(f"http://127.0.0.1:{port}/v1", engine)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
