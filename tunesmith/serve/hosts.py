"""DNS rebinding guard for a server with no key: it answers only requests addressed to a loopback name.

A server without `--api-key` listens on loopback only (serve/server.py refuses anything else), but a web page
the user opens can still reach it by rebinding its own domain to 127.0.0.1: the browser then sends
`Host: evil.example:8000`. Refusing any Host that is not a loopback name closes that door, as Jupyter and
TensorBoard do. With a key, the key is the guard (and the server may sit behind any name). An in-process
client (Starlette's TestClient, which the dashboard's chat uses) is let through: the server fills the ASGI
`client` from the socket, so no request from the network can claim to be it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tunesmith.serve.errors import ApiError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""Host names that mean this machine (IPv6 without brackets): the dashboard's and the server's one list."""
IN_PROCESS_CLIENT = "testclient"


def split_host(header: str) -> tuple[str, int | None]:
    """("name", port) of a Host header, lower case, IPv6 without brackets: `127.0.0.1:7860`, `[::1]:7860`,
    `localhost` (port 80); a port that is not a number is None."""
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port_text = header.partition(":") if header.count(":") == 1 else (header, "", "")
    if not port_text:
        return name, 80
    return (name, int(port_text)) if port_text.isdigit() else (name, None)


class LoopbackHosts:
    """ASGI middleware: 421 for a request whose Host header is not a loopback name."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        client = scope.get("client") or ("", 0)
        if scope["type"] == "http" and client[0] != IN_PROCESS_CLIENT:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if split_host(host)[0] not in LOOPBACK_NAMES:
                error = ApiError(421, f"This server answers only requests to localhost or 127.0.0.1 (it has no API "
                                 f"key), not to '{host[:100]}'; start it with --api-key to serve other names",
                                 code="host_not_allowed")
                body = json.dumps(error.body()).encode()
                await send({"type": "http.response.start", "status": 421,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
