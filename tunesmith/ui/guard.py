"""Safe by default: loopback unless told otherwise, a token at every start, paths that stay in the runs folder.

The dashboard can start training processes, so anyone who reaches it can spend the machine. Bound to
127.0.0.1 only this machine reaches it, but any web page open in its browser does too (access.py), so a
token is made up at every start, on loopback as well, unless the user gives one (`--token T`).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from pathlib import Path

from tunesmith.errors import UserError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class NotFound(UserError):
    """A run or comparison a request names does not exist: answered 404, not 400."""


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(token: str | None) -> str:
    """The token the server will demand: the one the user gave, else a fresh random one (also on loopback:
    a web page can reach 127.0.0.1 as well as the user can)."""
    if token is not None and not token.strip():
        raise UserError("--token: give a non-empty token, or leave --token out and one is made up")
    return token or secrets.token_urlsafe(24)


def token_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; with no token configured (an app built in-process) everything passes."""
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
