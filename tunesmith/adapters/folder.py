"""The one reader of a saved adapter folder's kind: adapter_config.json (or the bottleneck config) -> its record.

Serving, `tunesmith eval`/`chat` on an adapter folder, and loading an adapter back all ask here, so a folder
reads as the same kind everywhere and a type tunesmith does not train fails with one message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.adapters.kinds import KINDS
from tunesmith.adapters.unit import Adapter
from tunesmith.errors import UserError

PEFT_CONFIG = "adapter_config.json"


def read_kind(folder: str | Path) -> Adapter:
    """The kind of the adapter saved in `folder`: a kind with its own config file is recognised by that file,
    a PEFT folder by its adapter_config.json; a UserError when the folder holds neither or an unknown type."""
    folder = Path(folder)
    for kind in KINDS:
        if kind.config_file != PEFT_CONFIG and (folder / kind.config_file).is_file():
            return kind
    config_file = folder / PEFT_CONFIG
    if not config_file.is_file():
        own = [kind.config_file for kind in KINDS if kind.config_file != PEFT_CONFIG]
        raise UserError(f"{folder} holds no adapter (no {' or '.join([PEFT_CONFIG, *own])})")
    config = read_adapter_config(config_file)
    for kind in KINDS:
        if kind.saved_as is not None and kind.saved_as(config):
            return kind
    known = ", ".join(kind.name for kind in KINDS if kind.saved_as is not None)
    raise UserError(f"{folder}: adapter type {config.get('peft_type')} is not one tunesmith trains or serves "
                    f"(it reads {known})")


def read_adapter_config(config_file: Path) -> dict[str, Any]:
    """An adapter_config.json as a dict; a UserError naming the file when it is unreadable or not an object
    (a folder handed to the server is untrusted input)."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"cannot read {config_file}: {e}; it must be the JSON file PEFT's save_pretrained "
                        "writes") from None
    if not isinstance(config, dict):
        raise UserError(f"{config_file} holds a JSON {type(config).__name__}, not an object of adapter settings; "
                        "it must be the JSON file PEFT's save_pretrained writes")
    return config
