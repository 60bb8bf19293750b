"""`tunesmith ui`: the web dashboard over a runs folder (ui/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import friendly


@friendly
def ui(
    runs: Path = typer.Option(Path("runs"), "--runs", help="the runs folder to show (and launch runs into)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; anything but loopback needs a token"),
    port: int = typer.Option(7860, "--port"),
    token: Optional[str] = typer.Option(None, "--token", help="token every request must carry (one is made up "
                                        "when --host is not loopback and none is given)"),
) -> None:
    """The web dashboard: runs table, live curves, comparisons, chat with a run, launch/stop/resume training."""
    from tunesmith.ui.app import serve

    serve(runs, host, port, token)
