"""Build the server for `tunesmith serve TARGET...` and run it with uvicorn.

    tunesmith serve runs/cats runs/dogs --port 8000 --api-key KEY --adapter-root runs

`build` is what tests and the load benchmark use to run the same app in-process.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from fastapi import FastAPI

from tunesmith.errors import UserError
from tunesmith.serve import targets
from tunesmith.serve.app import create_app
from tunesmith.serve.engine import Engine
from tunesmith.serve.hosts import LOOPBACK_NAMES
from tunesmith.serve.limits import DEFAULT_MAX_BODY_BYTES
from tunesmith.serve.requestlog import RequestLog, default_path
from tunesmith.serve.store import ModelStore

API_KEY_ENV = "TUNESMITH_API_KEY"


@dataclass
class ServeOptions:
    """Everything `tunesmith serve` takes; validated by `build`."""

    targets: list[str]
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    adapter_root: Path | None = None
    max_adapters: int = 8
    queue_size: int | None = None
    """A fixed bound on waiting requests; None sizes the queue from measured throughput (serve/admission.py)."""
    max_batch: int = 16
    dtype: str = "fp32"
    max_queue_wait_s: float = 30.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    request_log: Path | None = None
    """Where the request log goes (serve/requestlog.py); None: no log (tests), `serve` picks a default."""


def build(options: ServeOptions) -> tuple[FastAPI, Engine]:
    """Resolve and load every target, then the app (its lifespan starts the engine)."""
    if not options.targets:
        raise UserError("give at least one TARGET: a run folder, adapter folder, model folder or .gguf file")
    if (options.queue_size or 1) < 1 or options.max_adapters < 1 or options.max_batch < 1:
        raise UserError("--queue-size, --max-adapters and --max-batch must be at least 1")
    if options.max_body_bytes < 1024 or options.max_queue_wait_s <= 0:
        raise UserError("--max-body-bytes must be at least 1024 and --max-queue-wait more than 0 seconds")
    if options.adapter_root is not None and not options.adapter_root.is_dir():
        raise UserError(f"--adapter-root {options.adapter_root} is not a folder")
    specs: list[targets.ServeSpec] = []
    for target in options.targets:
        for spec in targets.resolve(target):
            if spec.kind == "model" and any(s.kind == "model" and s.base == spec.base for s in specs):
                continue  # the same base, named by a second adapter
            specs.append(spec)
    store = ModelStore(specs, options.adapter_root, options.max_adapters, options.dtype)
    engine = Engine(store, options.queue_size, options.max_batch, max_wait_s=options.max_queue_wait_s)
    log = RequestLog(options.request_log) if options.request_log is not None else None
    return create_app(store, engine, api_key(options), options.max_body_bytes, log), engine


def api_key(options: ServeOptions) -> str | None:
    return options.api_key or os.environ.get(API_KEY_ENV) or None


def serve(options: ServeOptions) -> None:
    """Load the targets and serve until interrupted; off loopback, a key is required."""
    import uvicorn

    if options.host not in LOOPBACK_NAMES and api_key(options) is None:
        raise UserError(f"serving on {options.host} (beyond this machine) needs --api-key or {API_KEY_ENV}")
    if options.request_log is None:
        options = replace(options, request_log=default_path())
    app, _ = build(options)
    print(f"serving {', '.join(options.targets)} on http://{options.host}:{options.port}/v1", file=sys.stderr)
    print(f"request log: {options.request_log.resolve()} (one JSON line per request: time, route, model, status, "
          "latency, tokens; no prompt text, no keys)", file=sys.stderr)
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning")
