"""What every verb shares: one console on stderr, and user mistakes shown as one line, not a traceback."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from tunesmith.errors import UserError

console = Console(stderr=True)

REWARDS_FILE_HELP = "Python file whose reward functions the recipe may name (file_stem:function); repeatable"
"""One help text for `--rewards-file`, the option of every verb that validates a recipe naming user rewards
(train, validate, plan, compare): a recipe naming its own rewards must get past each of them alike."""


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show a UserError as one red line with exit status 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, markup=True)  # may quote input
            raise typer.Exit(2) from None

    return wrapper


def quiet_libraries() -> None:
    """Silence library chatter (weight-loading bars, deprecation notes) so our own output stays readable."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
