"""Preference, unpaired and prompt examples -> the token sequences the alignment methods score.

A scored sequence is a `Sample` (data/types.py): the whole chat tokenized once by `tokenize_conversation`
with `train_on="last"`, so its labels mark the final assistant turn (the answer, its end-of-turn marker
included) exactly as SFT would train it, and DPO, KTO, ORPO and the reward model see the same ids as the
SFT run before them. Anything after the answer (the newline a template writes between turns) is dropped:
the last token of a scored sequence is the answer's end, where a reward head reads the score.

Too long for `max_len`: the answer keeps at least half the room when it needs it; the prompt is cut from
its start (its end is nearest to the answer) and the answer from its end, as TRL does for DPO.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from tunesmith.data.tokenize import tokenize_conversation, tokenize_prompt
from tunesmith.data.types import IGNORE_INDEX, Conversation, Example, Message, Preference, Prompt, Sample, Unpaired
from tunesmith.errors import UserError


@dataclass(frozen=True)
class Pair:
    """A chosen and a rejected answer to the same prompt, tokenized."""

    chosen: Sample
    rejected: Sample


def tokenize_answer(tokenizer: Any, prompt: tuple[Message, ...], answer: tuple[Message, ...], max_len: int) -> Sample:
    """The chat `prompt + answer`, labels on the answer's last assistant turn, fitted into `max_len`."""
    sample = tokenize_conversation(tokenizer, Conversation(prompt + answer), sys.maxsize, "last")
    return fit(sample, max_len)


def fit(sample: Sample, max_len: int) -> Sample:
    """Drop what follows the answer, then cut prompt (from the start) and answer (from the end) to `max_len`."""
    scored = [i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX]
    if not scored:
        raise UserError("an answer has no tokens to score after tokenization; check the data's assistant turns")
    start, end = scored[0], scored[-1] + 1
    answer = min(end - start, max(max_len - start, max_len // 2))
    prompt = min(start, max_len - answer)
    keep = slice(start - prompt, start + answer)
    return Sample(sample.input_ids[keep], sample.labels[keep], truncated=end > max_len)


def tokenize_pairs(examples: list[Example], tokenizer: Any, max_len: int) -> list[Pair]:
    """One `Pair` per preference example."""
    pairs = []
    for ex in examples:
        if not isinstance(ex, Preference):
            raise UserError(f"expected preference rows (prompt, chosen, rejected), got a {type(ex).__name__} row")
        pairs.append(Pair(tokenize_answer(tokenizer, ex.prompt, ex.chosen, max_len),
                          tokenize_answer(tokenizer, ex.prompt, ex.rejected, max_len)))
    return pairs


def as_unpaired(examples: list[Example]) -> list[Unpaired]:
    """KTO rows as they are; each preference row becomes one desirable and one undesirable answer."""
    out: list[Unpaired] = []
    for ex in examples:
        if isinstance(ex, Unpaired):
            out.append(ex)
        elif isinstance(ex, Preference):
            out += [Unpaired(ex.prompt, ex.chosen, True), Unpaired(ex.prompt, ex.rejected, False)]
        else:
            raise UserError(f"expected kto rows (prompt, completion, label) or preference rows, got a {type(ex).__name__} row")
    return out


def tokenize_prompts(examples: list[Example], tokenizer: Any, max_len: int) -> list[list[int]]:
    """Prompt ids ending with the assistant header, ready to sample from; long ones keep their end."""
    prompts = []
    for ex in examples:
        if not isinstance(ex, Prompt):
            raise UserError(f"expected prompt rows (prompt or question, plus answer fields), got a {type(ex).__name__} row")
        prompts.append(tokenize_prompt(tokenizer, ex.prompt)[-max_len:])
    return prompts
