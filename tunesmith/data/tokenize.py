"""Examples -> `Sample(input_ids, labels)`: what the model reads and which tokens carry loss.

Conversations are rendered once with the tokenizer's chat template and tokenized once, exactly as
`tokenizer.apply_chat_template(messages, tokenize=True)` does, so training sees the same ids as inference
(`check_round_trip` proves it). Which tokens are trained is decided on the rendered *text*, then mapped to
tokens through the fast tokenizer's offsets. We never tokenize prefixes and concatenate them: with
SentencePiece-style tokenizers (Metaspace, byte fallback) the ids of a prefix are not a prefix of the ids of
the whole, so prefix-token counting mislabels tokens at turn boundaries.

The trained span of an assistant turn starts where the generation prompt ends
(`apply_chat_template(messages[:k], add_generation_prompt=True)`) and runs up to where the next message
starts, minus trailing whitespace: the content, then the end-of-turn marker and any eos the template writes
after it (`<|im_end|>`, `<|eot_id|>`, `</s>`), but not the newline that only separates turns. Training the
end-of-turn is what teaches the model to stop. A token that straddles a span edge (SentencePiece's "▁Hello"
after "Assistant:") is trained: the model has to produce it when it answers. Labels are not shifted: the
model shifts them (Hugging Face convention).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from tunesmith.data.types import IGNORE_INDEX, Conversation, Message, Sample
from tunesmith.errors import UserError, suggestion

TRAIN_ON = ("all", "last")
"""`all`: every assistant turn; `last`: only the final one (earlier turns are context)."""


def tokenize_conversation(tokenizer: Any, conv: Conversation, max_len: int, train_on: str = "all") -> Sample:
    """Token ids of the whole chat, labels on assistant turns only; the end is cut beyond `max_len`."""
    if train_on not in TRAIN_ON:
        hint = suggestion(train_on, TRAIN_ON)
        raise UserError(f"train_on must be one of {', '.join(TRAIN_ON)}, not '{train_on}'{hint}")
    _require_fast_with_template(tokenizer)
    messages = _as_dicts(conv.messages)
    text = _render(tokenizer, messages)
    spans = _assistant_spans(tokenizer, messages, text)
    if train_on == "last":
        spans = spans[-1:]
    # verbose=False: the over-length warning is moot, we truncate (and report it) ourselves.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids = list(encoding["input_ids"])
    labels = _labels_in_spans(ids, encoding["offset_mapping"], spans)
    return Sample(ids[:max_len], labels[:max_len], truncated=len(ids) > max_len)


def tokenize_prompt(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """Ids of a prompt followed by the assistant header, ready for generation."""
    ids = tokenizer.apply_chat_template(_as_dicts(messages), add_generation_prompt=True, return_dict=False)
    return list(ids)


def check_round_trip(tokenizer: Any, conv: Conversation) -> None:
    """Raise unless our training ids equal `apply_chat_template(..., tokenize=True)` for `conv`."""
    ours = tokenize_conversation(tokenizer, conv, max_len=sys.maxsize).input_ids
    theirs = list(tokenizer.apply_chat_template(_as_dicts(conv.messages), return_dict=False))
    if ours == theirs:
        return
    pos = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    raise UserError(
        f"training ids differ from apply_chat_template at token {pos} (of {len(ours)} vs {len(theirs)}): "
        f"ours {ours[pos:pos + 5]} {tokenizer.decode(ours[pos:pos + 5])!r}, "
        f"apply_chat_template {theirs[pos:pos + 5]} {tokenizer.decode(theirs[pos:pos + 5])!r}; "
        "try a named chat template (chatml, llama3, alpaca, plain)"
    )


def tokenize_text(tokenizer: Any, texts: list[str], block_len: int) -> list[Sample]:
    """Continued pre-training: documents joined by EOS, cut into blocks of `block_len`, every token trained.

    Each document is tokenized with the tokenizer's own special tokens (so BOS where it adds one), then EOS,
    so the model learns where documents end. The last block may be shorter; a 1-token block teaches nothing
    (labels are shifted inside the model) and is dropped.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no eos_token to separate documents; set one (tokenizer.eos_token)")
    stream: list[int] = []
    for ids in tokenizer(texts, verbose=False)["input_ids"] if texts else []:
        stream.extend(ids)
        if not ids or ids[-1] != eos:
            stream.append(eos)
    blocks = [stream[i : i + block_len] for i in range(0, len(stream), block_len)]
    return [Sample(block, list(block)) for block in blocks if len(block) > 1]


def _as_dicts(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _require_fast_with_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"{type(tokenizer).__name__} is a slow tokenizer; loss masks need a fast one (use_fast=True)")
    if not tokenizer.chat_template:
        raise UserError("the tokenizer has no chat template; set data.template (chatml, llama3, alpaca, plain)")


def _assistant_spans(tokenizer: Any, messages: list[dict[str, str]], text: str) -> list[tuple[int, int]]:
    """Character spans of `text` (the rendered chat) to train, one per non-empty assistant turn."""
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if k == 0:
            raise UserError("a conversation starts with an assistant message; it needs a prompt before it")
        prompt = _render(tokenizer, messages[:k], add_generation_prompt=True)
        if not text.startswith(prompt):
            raise UserError(
                f"the chat template renders the prompt before assistant turn {k} differently from the whole chat, "
                "so the answer cannot be located; use a named chat template (chatml, llama3, alpaca, plain)"
            )
        # Up to where the chat with this turn last stops agreeing with the whole chat: the next message.
        end = len(os.path.commonprefix([_render(tokenizer, messages[: k + 1]), text]))
        end = len(text[:end].rstrip())
        if end > len(prompt):
            spans.append((len(prompt), end))
    if not spans:
        raise UserError("a conversation has no assistant message with content, so nothing would be trained")
    return spans


def _labels_in_spans(ids: list[int], offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """`ids` where a token overlaps a span, IGNORE_INDEX elsewhere; spans and offsets are both in order."""
    labels = [IGNORE_INDEX] * len(ids)
    j = 0
    for i, (start, end) in enumerate(offsets):
        while j < len(spans) and start >= spans[j][1]:
            j += 1
        if j == len(spans):
            break
        if max(end, start + 1) > spans[j][0]:  # a zero-width token counts as covering its start
            labels[i] = ids[i]
    return labels
