"""Safe by default: loopback unless told otherwise, a token off loopback, paths that stay in the runs folder.

The dashboard can start training processes, so anyone who reaches it can spend the machine. Bound to
127.0.0.1 only the local user reaches it; bound anywhere else a token is required on every API call
(header `Authorization: Bearer T` or `X-Tunesmith-Token: T`, or `?token=T`, which the page keeps).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from pathlib import Path

from tunesmith.errors import UserError

TOKEN_HEADER = "x-tunesmith-token"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the server will demand: the given one; a fresh random one off loopback; None on loopback."""
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def token_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; with no token configured everything passes (loopback)."""
    if expected is None:
        return True
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def run_path(runs_dir: Path, name: str) -> Path:
    """runs_dir/name, refusing names that could step outside the runs folder (slashes, '..', dots first)."""
    if not NAME_PATTERN.match(name) or name in (".", ".."):
        raise UserError(f"'{name}' is not a run name: use letters, digits, '.', '_' and '-', not starting with '.'")
    path = (runs_dir / name).resolve()
    if path.parent != runs_dir.resolve():
        raise UserError(f"'{name}' is outside the runs folder {runs_dir}")
    return path
