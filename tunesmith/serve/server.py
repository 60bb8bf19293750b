"""The server of `tunesmith serve TARGET...`: load the targets, build the FastAPI app, run it with uvicorn.

    tunesmith serve runs/cats runs/dogs --port 8000 --api-key KEY --adapter-root runs

`build` is what tests and the load benchmark use to run the same app in-process.

The app's OpenAI-compatible routes over an Engine and its ModelStore:

    GET  /health                     open (no key): liveness, waiting requests, measured speed
    GET  /v1/models                  served ids; adapters name their base in `parent`
    POST /v1/chat/completions        chat, rendered with the model's own template; pictures as image_url parts
                                     (data: URIs, or files under --image-root; serve/images.py)
    POST /v1/completions             raw text (or token ids) continuation
    GET  /v1/adapters                the adapters served: id, base, kind, whether in memory
    POST /v1/adapters                {"name", "path"}: load an adapter or run folder under --adapter-root
    DELETE /v1/adapters/{name}       unload it once its in-flight requests finish

Every route but /health needs `Authorization: Bearer KEY` when the server has a key; with a key, the
interactive docs (/docs, /redoc, /openapi.json) are off, since a browser cannot send the key to them.
Without a key, only requests addressed to a loopback name are answered (serve/hosts.py: DNS rebinding).
Errors use OpenAI's error object: 400 bad input or too long for the context, 401 missing or wrong key,
404 unknown model, 413 body over --max-body-bytes, 421 a non-loopback Host without a key, 503 queue full
(with Retry-After).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tunesmith.errors import UserError
from tunesmith.serve import targets
from tunesmith.serve.completions import complete
from tunesmith.serve.engine import Engine
from tunesmith.serve.errors import ApiError
from tunesmith.serve.hosts import LOOPBACK_NAMES, LoopbackHosts
from tunesmith.serve.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from tunesmith.serve.loading import load_requested
from tunesmith.serve.requestlog import RequestLog, RequestLogMiddleware, default_path, note
from tunesmith.serve.schemas import AdapterRequest, ChatRequest, CompletionRequest
from tunesmith.serve.store import Entry, ModelStore

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
    image_root: Path | None = None
    """The folder chat requests may name picture files in (serve/images.py); None: pictures as data: URIs only."""


def build(options: ServeOptions) -> tuple[FastAPI, Engine]:
    """Resolve and load every target, then the app (its lifespan starts the engine)."""
    if not options.targets:
        raise UserError("give at least one TARGET: a run folder, adapter folder, model folder or .gguf file")
    if (options.queue_size or 1) < 1 or options.max_adapters < 1 or options.max_batch < 1:
        raise UserError("--queue-size, --max-adapters and --max-batch must be at least 1")
    if options.max_body_bytes < 1024 or options.max_queue_wait_s <= 0:
        raise UserError("--max-body-bytes must be at least 1024 and --max-queue-wait more than 0 seconds")
    for flag, folder in (("--adapter-root", options.adapter_root), ("--image-root", options.image_root)):
        if folder is not None and not folder.is_dir():
            raise UserError(f"{flag} {folder} is not a folder")
    specs: list[targets.ServeSpec] = []
    for target in options.targets:
        for spec in targets.resolve(target):
            if spec.kind == "model" and any(s.kind == "model" and s.base == spec.base for s in specs):
                continue  # the same base, named by a second adapter
            specs.append(spec)
    store = ModelStore(specs, options.adapter_root, options.max_adapters, options.dtype)
    engine = Engine(store, options.queue_size, options.max_batch, max_wait_s=options.max_queue_wait_s)
    log = RequestLog(options.request_log) if options.request_log is not None else None
    return create_app(store, engine, api_key(options), options.max_body_bytes, log, options.image_root), engine


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


def create_app(store: ModelStore, engine: Engine, api_key: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, request_log: RequestLog | None = None,
               image_root: Path | None = None) -> FastAPI:
    """The app; its lifespan starts the engine's worker and stops it (and closes the log) on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        engine.stop()
        if request_log is not None:
            request_log.close()

    docs = {} if api_key is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="tunesmith serve", lifespan=lifespan, **docs)
    _error_handlers(app)
    _routes(app, store, engine, [Depends(_key_check(api_key))], image_root)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if api_key is None:
        app.add_middleware(LoopbackHosts)
    if request_log is not None:
        app.add_middleware(RequestLogMiddleware, log=request_log)  # outermost: logs the 413s too
    return app


def _routes(app: FastAPI, store: ModelStore, engine: Engine, auth: list[Any], image_root: Path | None) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        rate = engine.admission.work_per_s
        return {"status": "ok", "models": len(store.names()), "waiting": engine.waiting(),
                "measured_tokens_per_s": round(rate, 1) if rate is not None else None}

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(store.entries[n]) for n in store.names()]}

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat(request: ChatRequest, raw: Request) -> Any:
        return await complete(store, engine, request, chat=True, log=partial(note, raw), image_root=image_root)

    @app.post("/v1/completions", dependencies=auth)
    async def completions(request: CompletionRequest, raw: Request) -> Any:
        return await complete(store, engine, request, chat=False, log=partial(note, raw))

    @app.get("/v1/adapters", dependencies=auth)
    async def adapters() -> dict[str, Any]:
        entries = [store.entries[n] for n in store.names() if store.entries[n].is_adapter]
        return {"object": "list", "data": [_adapter_card(e, store.adapter_root) for e in entries]}

    @app.post("/v1/adapters", dependencies=auth)
    async def load(request: AdapterRequest, raw: Request) -> dict[str, Any]:
        note(raw, model=request.name)
        return _model_card(await run_in_threadpool(load_requested, store, request.name, request.path))

    @app.delete("/v1/adapters/{name}", dependencies=auth)
    async def unload(name: str, raw: Request) -> dict[str, Any]:
        note(raw, model=name[:64])
        await run_in_threadpool(store.remove_adapter, name)
        return {"id": name, "object": "model", "deleted": True}


def _model_card(entry: Entry) -> dict[str, Any]:
    parent = entry.base.spec.name if entry.is_adapter else None
    return {"id": entry.name, "object": "model", "created": int(time.time()), "owned_by": "tunesmith",
            "root": entry.base.spec.name, "parent": parent, "kind": entry.spec.kind}


def _adapter_card(entry: Entry, root: Path | None) -> dict[str, Any]:
    """An adapter as GET /v1/adapters lists it; its folder relative to the adapter root (no server paths)."""
    folder = entry.spec.adapter
    shown = None if folder is None else (
        str(folder.resolve().relative_to(root)) if root is not None and folder.resolve().is_relative_to(root)
        else folder.name)
    return {"id": entry.name, "object": "adapter", "parent": entry.base.spec.name, "kind": entry.spec.kind,
            "resident": entry.resident, "in_flight": entry.refs, "folder": shown}


def _key_check(api_key: str | None) -> Any:
    async def check(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                           code="invalid_api_key")

    return check


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        return JSONResponse(ApiError(400, f"{param}: {first['msg']}" if param else first["msg"],
                                     param=param).body(), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        api = ApiError(error.status_code, str(error.detail))
        return JSONResponse(api.body(), status_code=error.status_code, headers=api.headers())
