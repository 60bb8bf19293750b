"""`tunesmith demo`: the whole job, offline, about a minute on 2 idle CPU cores (testing/demo.py builds and runs it)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesmith.commands.common import friendly


@friendly
def demo(
    out: Path = typer.Option(Path("runs"), "--out", help="where the demo writes its base model, data and run"),
) -> None:
    """Offline end-to-end demo: build a tiny model and data, fine-tune with LoRA, show held-out loss before/after."""
    from tunesmith.testing.demo import run_demo

    run_demo(out)
