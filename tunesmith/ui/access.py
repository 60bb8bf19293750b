"""Who may talk to the dashboard: a per-start token, a Host allow-list, same-origin JSON-only actions.

The dashboard starts training processes, so a request that reaches it can spend the machine or run a recipe.
Loopback is not enough: any web page the user opens can post to 127.0.0.1 (a form needs no permission), and
through DNS rebinding a page's own host name can point at 127.0.0.1 and read the answers. The checks, as
Jupyter Server and TensorBoard make them:

- Host: the request's Host header must name this server (the bound address, localhost, 127.0.0.1 or [::1],
  with the bound port) or a name given with `--allow-host`. A rebinding page sends its own name: 403.
- Token: made up at each start (or `--token T`), printed in the URL the user opens. `/?token=T` is taken
  once, kept as an HttpOnly, SameSite=Strict cookie and the URL cleaned; scripts send `Authorization: Bearer T`.
- Actions (every POST): an `Origin` other than this server's own is refused (403), and the body must be
  JSON (`Content-Type: application/json`, 415 otherwise) — a form on another site cannot send that, and a
  script on another site must ask first (a CORS preflight this server never grants).
- Every answer forbids framing (another page cannot overlay the dashboard to steer clicks) and sniffing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from tunesmith.pages import render_page
from tunesmith.serve.hosts import LOOPBACK_NAMES, split_host
from tunesmith.ui.guard import is_loopback, token_matches

OPEN_PATHS = ("/static/", "/favicon.ico")
"""Served without the token: the page's own code and icon, no data."""
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
"""Sent with every answer."""


@dataclass(frozen=True)
class Access:
    """The dashboard's access rules, fixed at start."""

    token: str | None
    """Every request but OPEN_PATHS needs it; None only for an app built in-process (tests, embedding)."""
    hosts: frozenset[str]
    """Host names (lower case, IPv6 without brackets) the Host header may carry."""
    port: int | None
    """The bound port the Host header must carry; None accepts any (an app not bound to a port yet)."""
    any_ip: bool = False
    """Bound beyond loopback: any IP address is a valid Host (rebinding needs a domain name, not an IP)."""

    @classmethod
    def build(cls, host: str, port: int | None, token: str | None, extra_hosts: Iterable[str] = ()) -> Access:
        """The rules for a server bound to `host`:`port`; `extra_hosts` are names given with --allow-host."""
        bound = host.strip("[]").lower()
        names = {*LOOPBACK_NAMES, *(h.strip().strip("[]").lower() for h in extra_hosts if h.strip())}
        if bound not in ("0.0.0.0", "::", ""):
            names.add(bound)
        return cls(token=token, hosts=frozenset(names), port=port, any_ip=not is_loopback(bound))

    @property
    def cookie(self) -> str:
        """The cookie's name; with the port in it, since browsers share cookies across ports of one host."""
        return f"tunesmith-token-{self.port}" if self.port else "tunesmith-token"

    def host_problem(self, header: str | None) -> str | None:
        """Why a request with this Host header is refused, or None when it names this server."""
        name, port = split_host(header or "")
        if not name:
            return "the request has no Host header"
        if self.port is not None and port != self.port:
            return f"Host '{header}' names port {port}, not this dashboard's port {self.port}"
        if name in self.hosts or (_is_ip(name) and (self.any_ip or ipaddress.ip_address(name).is_loopback)):
            return None
        return (f"Host '{header}' is not a name this dashboard answers to (a page using another site's name is "
                f"refused); open it as http://127.0.0.1:{self.port or 'PORT'}/, or start it with "
                f"`tunesmith ui --allow-host {name}`")

    def origin_problem(self, request: Request) -> str | None:
        """Why a state-changing request is refused as cross-site, or None when it comes from this page."""
        origin = request.headers.get("origin")
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"a {site} request may not change anything here (Sec-Fetch-Site: {site})"
        if origin is None:
            return None  # not a browser (curl, scripts): the token is the check
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != request.headers.get("host", "").lower():
            return f"Origin '{origin}' is not this dashboard: only its own page may start, stop or resume runs"
        return None

    def given_token(self, request: Request) -> str | None:
        """The token a request carries: `Authorization: Bearer T` or the cookie the page keeps."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.cookies.get(self.cookie)


def add_access_checks(app: FastAPI, access: Access) -> None:
    """Every request passes Host, then the token, then (actions) Origin and the JSON content type."""

    @app.middleware("http")
    async def check(request: Request, call_next: object) -> Response:
        answer = refusal(access, request)
        if answer is None:
            answer = await call_next(request)  # type: ignore[operator]
        answer.headers.update(HEADERS)
        return answer


def refusal(access: Access, request: Request) -> Response | None:
    """The answer that refuses `request`, or None when it may go on."""
    problem = access.host_problem(request.headers.get("host"))
    if problem:
        return JSONResponse({"error": problem}, status_code=403)
    path = request.url.path
    if access.token is not None and not path.startswith(OPEN_PATHS):
        query = request.query_params.get("token")
        if query is not None and path == "/" and request.method == "GET" and token_matches(access.token, query):
            return _keep_token(access)
        if not token_matches(access.token, access.given_token(request)):
            return _needs_token(path)
    if request.method not in SAFE_METHODS:
        problem = access.origin_problem(request)
        if problem:
            return JSONResponse({"error": problem}, status_code=403)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            return JSONResponse({"error": f"send the body as JSON (Content-Type: application/json), not "
                                 f"'{kind or 'nothing'}': this dashboard refuses form posts, which any web page "
                                 "can make"}, status_code=415)
    return None


def _keep_token(access: Access) -> Response:
    """The first visit with ?token=T: keep it as a cookie the page's requests carry, and drop it from the URL."""
    answer = RedirectResponse("/", status_code=303)
    answer.set_cookie(access.cookie, access.token or "", httponly=True, samesite="strict", path="/")
    return answer


def _needs_token(path: str) -> Response:
    message = ("this dashboard needs its token: open the URL `tunesmith ui` printed (http://…/?token=…), "
               "or send the header Authorization: Bearer TOKEN")
    if path == "/":
        return HTMLResponse(render_page("needs_token.html.j2", message=message), status_code=401)
    return JSONResponse({"error": message}, status_code=401)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
