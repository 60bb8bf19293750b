"""User-facing errors.

A `UserError` is a mistake the user can fix (a bad recipe key, a malformed data row, a missing file).
The CLI prints its message alone, without a traceback, and exits with status 2. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input, reported as one clear message."""


class DataError(UserError):
    """A malformed data row; the message starts with `file:line:`."""


def did_you_mean(word: str, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str | None:
    """The closest valid name for a mistyped `word`, or None.

    `aliases` maps names users bring from other tools (`learning_rate`) to ours (`lr`), so a typo of
    the foreign name (`lerning_rate`) still finds our key.
    """
    choices = list(choices)
    aliases = {k: v for k, v in (aliases or {}).items() if v in choices}
    if word in aliases:
        return aliases[word]
    candidates = choices + list(aliases)
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not match:
        return None
    return aliases.get(match[0], match[0])


def suggestion(word: str, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """`" (did you mean 'x'?)"` or an empty string."""
    best = did_you_mean(word, choices, aliases)
    return f" (did you mean '{best}'?)" if best else ""
