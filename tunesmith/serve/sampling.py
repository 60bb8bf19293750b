"""Per-row sampling and stopping inside one batched `generate` call.

Rows of one batch come from different requests, each with its own temperature, top_p, seed, stop texts and
max_tokens, and transformers' `generate` samples a whole batch with one setting and the global RNG. So the
batch runs greedy, and `RowSampler` (a logits processor) draws each row's token itself, with the row's own
settings and its own seeded generator, then leaves only that token standing: greedy picks it. A row's
tokens are thus the same whichever requests share its batch. `RowStopper` (a stopping criterion) reads each
new token, stops the row on eos, a stop text or its token budget, and hands the text so far to the row's
sink: a stop text is never shown, even partly, because the last `longest stop - 1` characters are held
back until the row ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria


@dataclass
class RowState:
    """One choice of one request while it generates."""

    temperature: float
    top_p: float
    max_tokens: int
    stops: Sequence[str]
    eos_ids: frozenset[int]
    tokenizer: Any
    generator: torch.Generator
    on_text: Callable[[str], None] = lambda text: None
    tokens: list[int] = field(default_factory=list)
    generated: int = 0
    sent: int = 0
    finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def pick(self, logits: torch.Tensor) -> int:
        """The next token: argmax at temperature 0, else a draw from the top_p nucleus at `temperature`."""
        if self.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_probs, order = probs.sort(descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs >= self.top_p  # keep the smallest set reaching top_p
            sorted_probs[outside] = 0
            return int(order[torch.multinomial(sorted_probs, 1, generator=self.generator)])
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def push(self, token: int) -> None:
        """Take the row's next token: stop on eos, a stop text or the budget; pass on the text that is final."""
        self.generated += 1
        if token in self.eos_ids:
            self._finish("stop", self._text())
            return
        self.tokens.append(token)
        text = self._text()
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self._finish("stop", text[:cut])
        elif self.generated >= self.max_tokens:
            self._finish("length", text)
        else:
            hold = max((len(s) for s in self.stops), default=1) - 1
            safe = len(text) - hold
            while safe > self.sent and text[safe - 1] == "\ufffd":  # an unfinished UTF-8 character
                safe -= 1
            self._send(text[:safe])

    def _text(self) -> str:
        return self.tokenizer.decode(self.tokens, skip_special_tokens=False)

    def _finish(self, reason: str, text: str) -> None:
        self._send(text)
        self.finish_reason = reason

    def _send(self, text: str) -> None:
        if len(text) > self.sent:
            self.on_text(text[self.sent:])
            self.sent = len(text)


class RowSampler(LogitsProcessor):
    """Each row's own token choice (see the module docstring); finished rows get the pad token."""

    def __init__(self, rows: Sequence[RowState], pad_id: int) -> None:
        self.rows, self.pad_id = rows, pad_id

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # scores: (rows, vocab)
        chosen = torch.full_like(scores, float("-inf"))
        for i, row in enumerate(self.rows):
            chosen[i, self.pad_id if row.done else row.pick(scores[i])] = 0.0
        return chosen


class RowStopper(StoppingCriteria):
    """Feeds each row its new token (the last column of `input_ids`); True for rows that are done."""

    def __init__(self, rows: Sequence[RowState]) -> None:
        self.rows = rows

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        last = input_ids[:, -1].tolist()
        for row, token in zip(self.rows, last):
            if not row.done:
                row.push(token)
        return torch.tensor([row.done for row in self.rows], device=input_ids.device)
