"""What a recipe launched from the page may not do unless `tunesmith ui --allow-code` said so: run code.

A recipe is data a web page can send (access.py keeps other sites out, but the user may paste one copied
from anywhere), so a launch refuses the two ways a recipe could run code:

- `model_options.trust_remote_code: true`: transformers runs the Python shipped in the model folder.
- a reward that is not one of tunesmith's own (`grpo.rewards: ["os:getcwd"]`, `{name: "x.py:f"}`): code a
  training process would import and call.

The same recipe still runs from the command line, where the user who types the command decides
(`tunesmith train RECIPE`, with `--rewards-file FILE` for their own rewards).
"""

from __future__ import annotations

from typing import Any

from tunesmith.errors import UserError
from tunesmith.methods.shared.rewards import REWARDS

FLAG = "--allow-code"


def code_references(raw: dict[str, Any]) -> list[str]:
    """Each key of the recipe mapping `raw` that would run code, as `key: what` (empty when none does)."""
    found = []
    options = raw.get("model_options")
    if isinstance(options, dict) and _truthy(options.get("trust_remote_code")):
        found.append("model_options.trust_remote_code: true runs the Python code shipped with the model")
    for key, entries in _reward_lists(raw, ""):
        for index, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else entry
            if name not in REWARDS:
                found.append(f"{key}[{index}]: '{name}' is not a built-in reward ({', '.join(REWARDS)}); "
                             "it names Python code to import")
    return found


def refuse_code(raw: dict[str, Any], allowed: bool) -> None:
    """A UserError naming every key of `raw` that would run code, unless the dashboard was started with FLAG."""
    found = [] if allowed else code_references(raw)
    if found:
        raise UserError("this recipe would run code, which the dashboard launches only when started with "
                        f"`tunesmith ui {FLAG}`:\n  " + "\n  ".join(found) + "\nRemove those keys, start the "
                        f"dashboard with {FLAG} if you trust this recipe, or run it yourself: tunesmith train RECIPE")


def _reward_lists(node: Any, prefix: str) -> list[tuple[str, list[Any]]]:
    """(dotted key, list) of every `rewards:` list in the mapping, at any depth (grpo.rewards, ppo.rewards...)."""
    found = []
    for key, value in node.items() if isinstance(node, dict) else ():
        path = f"{prefix}{key}"
        if key == "rewards" and isinstance(value, list):
            found.append((path, value))
        elif isinstance(value, dict):
            found += _reward_lists(value, path + ".")
    return found


def _truthy(value: Any) -> bool:
    """What the recipe's bool field would read as true (pydantic accepts true, 1, "yes", "on", "true")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)
