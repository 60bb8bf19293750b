"""Greedy, batched generation that stops at the end of the answer.

A row stops on the eos token id or as soon as one of the stop texts appears in what it generated: the chat
template's end-of-turn marker may be plain text of several tokens on a base tokenizer (`<|im_end|>` is 7
pieces there), and few-shot prompts stop where the next example would begin ("Question:"). The answer is
cut before the earliest stop text. Prompts are left-padded so every row's next token sits in the last
column; rows are sorted by length so batches waste little padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from tunesmith.evaluate.loglik import max_context
from tunesmith.models.padding import left_pad


class _StopOnText(StoppingCriteria):
    """Marks a row done once any stop text occurs in the tokens it generated (a recent window of them)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str], prompt_len: int) -> None:
        self.tokenizer, self.stops, self.prompt_len = tokenizer, list(stops), prompt_len
        self.window = 8 + 4 * max(len(s) for s in self.stops)  # a token decodes to >= 1 char, bar byte pieces

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        start = max(self.prompt_len, input_ids.shape[1] - self.window)
        texts = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=False)
        return torch.tensor([any(s in t for s in self.stops) for t in texts], device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any stop text."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


@torch.inference_mode()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    batch_size: int = 8,
) -> list[str]:
    """Greedy continuations of token-id `prompts`, in order, each cut at eos or the earliest stop text.

    A prompt too long for the context window keeps its last tokens, leaving room for `max_new_tokens`.
    """
    keep = max_context(model) - max_new_tokens
    if keep < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the context window")
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    stops = [s for s in (*stop, tokenizer.eos_token) if s]
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad)
    device = next(model.parameters()).device
    rows = [p[-keep:] for p in prompts]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    answers: list[str] = [""] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = left_pad([rows[i] for i in chunk], pad, device=device)
        width = ids.shape[1]
        criteria = StoppingCriteriaList([_StopOnText(tokenizer, stops, width)]) if stops else None
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, stopping_criteria=criteria)
        for b, i in enumerate(chunk):
            new = out[b, width:].tolist()
            if eos is not None and eos in new:
                new = new[: new.index(eos)]
            answers[i] = cut_at_stop(tokenizer.decode(new, skip_special_tokens=False), stops)
    return answers
