"""The request log of `tunesmith serve`: one JSON line per request, appended to a file the startup output
names, so a user can see who asked for which model, how it ended and how long it took.

    {"time": "2026-12-06T02:10:00.123Z", "method": "POST", "route": "/v1/chat/completions", "model": "cats",
     "status": 200, "latency_ms": 412.5, "prompt_tokens": 21, "completion_tokens": 12}

Never logged: prompt or answer text, headers (keys travel there), the query string (a key could be there).
Handlers add `model` and token counts through `note(request, ...)`; a streamed answer is logged when its
last chunk is sent, a dropped connection with `"completed": false`.

A server that runs for weeks must not fill its disk: past `MAX_BYTES` the file is rotated as
`logging.handlers.RotatingFileHandler` does (`requests.jsonl` -> `.1` -> `.2` ..., the oldest beyond `BACKUPS`
deleted), so the log holds at most (BACKUPS + 1) x MAX_BYTES plus one line per file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.requests import Request

from tunesmith.errors import UserError

Scope = MutableMapping[str, Any]
_KEY = "tunesmith_request_log"
MAX_BYTES = 64 << 20
"""A request log file's size before it is rotated (64 MiB: about 300,000 requests)."""
BACKUPS = 4
"""Rotated files kept besides the current one."""


def default_path() -> Path:
    """serve-logs/requests-<UTC time>-<pid>.jsonl under the working directory: one file per server start."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("serve-logs") / f"requests-{stamp}-{os.getpid()}.jsonl"


class RequestLog:
    """An append-only JSON-lines file, written line by line under a lock (requests end on many threads),
    rotated past `max_bytes` with `backups` older files kept (path.1 the newest of them)."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._open()
        except OSError as e:
            raise UserError(f"cannot write the request log {path}: {e.strerror}; pick another --request-log") from e
        self._lock = threading.Lock()

    def _open(self) -> Any:
        return open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 -- open while serving

    def write(self, record: dict[str, Any]) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.write(json.dumps(record) + "\n")
                if self._file.tell() >= self.max_bytes:
                    self._rotate()

    def _rotate(self) -> None:
        """requests.jsonl -> .1 -> .2 ..., the one beyond `backups` dropped; a failure keeps appending."""
        self._file.close()
        try:
            for i in range(self.backups, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                newer = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
                if newer.exists():
                    os.replace(newer, older)
            if self.backups == 0:
                self.path.unlink(missing_ok=True)
        finally:
            self._file = self._open()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def note(request: Request, **fields: Any) -> None:
    """Add `fields` (model, prompt_tokens, completion_tokens) to this request's log line."""
    line = request.scope.get("state", {}).get(_KEY)
    if line is not None:
        line.update(fields)


class RequestLogMiddleware:
    """ASGI middleware writing one line per HTTP request to `log`."""

    def __init__(self, app: Callable[..., Awaitable[None]], log: RequestLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        line: dict[str, Any] = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                                "method": scope["method"], "route": scope["path"][:200]}
        scope.setdefault("state", {})[_KEY] = line
        done = False

        async def logged_send(message: MutableMapping[str, Any]) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                line["status"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False) and not done:
                done = True
                self._write(line, start, completed=True)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            if not done:
                line.setdefault("status", 500)
                self._write(line, start, completed=False)

    def _write(self, line: dict[str, Any], start: float, completed: bool) -> None:
        record = {**line, "latency_ms": round((time.perf_counter() - start) * 1000, 1)}
        if not completed:
            record["completed"] = False
        self.log.write(record)
