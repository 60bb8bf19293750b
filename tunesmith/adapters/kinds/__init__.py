"""Every adapter kind, one record each (adapters/unit.py says what a record holds); registered here in one line each.

Adding a kind: a module `tunesmith/adapters/kinds/<name>.py` with its `Adapter` record, then one line below.
`adapter: <name>` becomes valid in recipes, and training, saving, loading, merging, serving and `plan` read
the kind's facts from its record.
"""

from __future__ import annotations

from tunesmith.adapters.kinds import bottleneck, full, ia3, lora, prompt_learning
from tunesmith.adapters.unit import Adapter
from tunesmith.errors import UserError

KINDS: tuple[Adapter, ...] = (
    lora.LORA,
    lora.QLORA,
    lora.DORA,
    prompt_learning.PREFIX,
    prompt_learning.PROMPT,
    ia3.IA3,
    bottleneck.BOTTLENECK,
    full.FULL,
)

BY_NAME: dict[str, Adapter] = {kind.name: kind for kind in KINDS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def sharded_kinds() -> str:
    """The kinds fsdp2 and ZeRO runs support, for their error messages ("lora or full")."""
    return " or ".join(kind.name for kind in KINDS if kind.runs_sharded)


def picture_kinds() -> str:
    """The kinds that train and serve vision-language models, for their error messages ("lora, ... or full")."""
    names = [kind.name for kind in KINDS if kind.reads_pictures]
    return ", ".join(names[:-1]) + " or " + names[-1]


def adapter_kind(name: str) -> Adapter:
    """The record of `adapter: name`; a UserError listing the kinds when there is none."""
    kind = BY_NAME.get(name)
    if kind is None:
        raise UserError(f"adapter: '{name}' is unknown; use one of: {', '.join(NAMES)}")
    return kind
