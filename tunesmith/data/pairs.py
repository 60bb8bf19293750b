"""Preference, unpaired and prompt examples -> the token sequences the alignment methods score.

A scored sequence is a `Sample` (data/types.py): the whole chat tokenized once by `tokenize_conversation`
with `train_on="last"`, so its labels mark the final assistant turn (the answer, its end-of-turn marker
included) exactly as SFT would train it, and DPO, KTO, ORPO and the reward model see the same ids as the
SFT run before them. Anything after the answer (the newline a template writes between turns) is dropped:
the last token of a scored sequence is the answer's end, where a reward head reads the score.

Too long: the prompt is cut first, from its start (its end is nearest to the answer), then the answer from
its end, as TRL does for DPO. `data.max_prompt_len` caps the prompt; without it the prompt gets whatever
room the answer leaves, but the answer keeps at least half of `max_len` when it needs it. An answer left with
no token to score (empty, or no room after a long `max_prompt_len`) makes its example unusable:
`drop_unusable` removes such examples, and the report counts them, so no pair is ever trained one-sided.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from tunesmith.data.tokenize import tokenize_conversation, tokenize_prompt
from tunesmith.data.types import IGNORE_INDEX, Conversation, Example, Message, Preference, Prompt, Sample, Unpaired
from tunesmith.errors import UserError

PICTURES_REFUSAL = ("preference rows with images train with method: dpo (any dpo.loss) on a vision-language model "
                    "only; orpo, kto, reward and a text model's dpo cannot see them. Use a VLM, or drop the rows' "
                    "images")


@dataclass(frozen=True)
class Pair:
    """A chosen and a rejected answer to the same prompt, tokenized."""

    chosen: Sample
    rejected: Sample


def tokenize_answer(tokenizer: Any, prompt: tuple[Message, ...], answer: tuple[Message, ...], max_len: int,
                    max_prompt_len: int | None = None) -> Sample:
    """The chat `prompt + answer`, labels on the answer's last assistant turn, fitted into `max_len`."""
    try:
        sample = tokenize_conversation(tokenizer, Conversation(prompt + answer), sys.maxsize, "last")
    except UserError:  # an answer without content: nothing to score (the example is unusable, not fatal)
        return Sample([], [], truncated=False)
    return fit(sample, max_len, max_prompt_len)


def fit(sample: Sample, max_len: int, max_prompt_len: int | None = None) -> Sample:
    """Drop what follows the answer; cut the prompt from its start to `max_prompt_len`, then to what the
    answer leaves of `max_len` (the answer keeping at least half when no prompt limit is set), then the
    answer from its end. The result may score no token (see `drop_unusable`)."""
    scored = [i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX]
    if not scored:
        return Sample(sample.input_ids[:max_len], sample.labels[:max_len], truncated=len(sample) > max_len)
    start, end = scored[0], scored[-1] + 1
    if max_prompt_len is None:
        answer = min(end - start, max(max_len - start, max_len // 2))
        prompt = min(start, max_len - answer)
    else:
        prompt = min(start, max_prompt_len, max_len)
        answer = min(end - start, max_len - prompt)
    keep = slice(start - prompt, start + answer)
    return Sample(sample.input_ids[keep], sample.labels[keep], truncated=start - prompt > 0 or answer < end - start)


def usable(example: Example, tokenizer: Any, max_len: int, max_prompt_len: int | None = None) -> bool:
    """False for a preference example whose chosen or rejected answer, or a KTO example whose completion,
    scores no token once fitted; other examples are always usable here."""
    if isinstance(example, Preference):
        answers = (example.chosen, example.rejected)
    elif isinstance(example, Unpaired):
        answers = (example.completion,)
    else:
        return True
    return all(tokenize_answer(tokenizer, example.prompt, a, max_len, max_prompt_len).trained_tokens > 0
               for a in answers)


def drop_unusable(examples: list[Example], tokenizer: Any, max_len: int,
                  max_prompt_len: int | None = None) -> tuple[list[Example], int]:
    """(the usable examples, how many were dropped): a pair is trained on both sides or not at all."""
    kept = [ex for ex in examples if usable(ex, tokenizer, max_len, max_prompt_len)]
    return kept, len(examples) - len(kept)


def tokenize_pairs(examples: list[Example], tokenizer: Any, max_len: int,
                   max_prompt_len: int | None = None) -> list[Pair]:
    """One `Pair` per preference example; every example must be usable (`drop_unusable` ran on them)."""
    pairs = []
    for ex in examples:
        if not isinstance(ex, Preference):
            raise UserError(f"expected preference rows (prompt, chosen, rejected), got a {type(ex).__name__} row")
        if ex.images:  # as text, the pair would judge answers to a question whose pictures it never showed
            raise UserError(PICTURES_REFUSAL)
        pair = Pair(tokenize_answer(tokenizer, ex.prompt, ex.chosen, max_len, max_prompt_len),
                    tokenize_answer(tokenizer, ex.prompt, ex.rejected, max_len, max_prompt_len))
        if not (pair.chosen.trained_tokens and pair.rejected.trained_tokens):
            raise UserError("a preference pair has an answer with no token to score after truncation; raise "
                            "train.max_seq_len or lower data.max_prompt_len")
        pairs.append(pair)
    return pairs


def mismatched_answers(rows: list[Unpaired], tokenizer: Any, max_len: int,
                       max_prompt_len: int | None = None) -> list[Sample]:
    """KTO's KL baseline sequences: prompt i with answer i-1 (cyclically), fitted as the answers are.

    Each scores at least one token whenever the rows are usable: prompt i is fitted to the same length as in
    its own row (the prompt's tokens do not depend on the answer), which left its own answer room, and every
    usable answer has content. A baseline term with no token would silently pull the KL estimate to 0."""
    samples = [tokenize_answer(tokenizer, r.prompt, rows[i - 1].completion, max_len, max_prompt_len)
               for i, r in enumerate(rows)]
    if any(s.trained_tokens == 0 for s in samples):
        raise UserError("a KTO micro-batch has a mismatched (prompt, answer) pair with no token to score after "
                        "truncation; raise train.max_seq_len or lower data.max_prompt_len")
    return samples


def as_unpaired(examples: list[Example]) -> list[Unpaired]:
    """KTO rows as they are; each preference row becomes one desirable and one undesirable answer."""
    out: list[Unpaired] = []
    for ex in examples:
        if isinstance(ex, Unpaired):
            out.append(ex)
        elif isinstance(ex, Preference):
            if ex.images:  # an Unpaired answer has no pictures to carry them
                raise UserError(PICTURES_REFUSAL)
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
