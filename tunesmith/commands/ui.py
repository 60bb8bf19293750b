"""`tunesmith ui`: the web dashboard over a runs folder (ui/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import friendly


@friendly
def ui(
    runs: Path = typer.Option(Path("runs"), "--runs", help="the runs folder to show (and launch runs into)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback unless you need more)"),
    port: int = typer.Option(7860, "--port"),
    token: Optional[str] = typer.Option(None, "--token", help="the token every request must carry (default: a "
                                        "fresh one each start, printed in the URL to open)"),
    allow_host: Optional[list[str]] = typer.Option(None, "--allow-host", help="another host name the page may be "
                                                   "opened as (repeatable); others are refused against DNS rebinding"),
    allow_code: bool = typer.Option(False, "--allow-code", help="let runs launched from the page run code: "
                                    "trust_remote_code and rewards that are not built in (off: such a launch is "
                                    "refused, naming the key)"),
) -> None:
    """The web dashboard: runs table, live curves, comparisons, chat with a run, launch/stop/resume training."""
    from tunesmith.ui.app import serve

    serve(runs, host, port, token, allow_host or [], allow_code)
