"""Log-likelihood of continuations: how the multiple-choice benchmarks (MMLU, HellaSwag) score a model.

Each (context, continuation) pair is one sequence; one forward pass over context+continuation gives the sum
of the log-probabilities of the continuation tokens alone. Pairs are scored in batches, longest first (as
lm-evaluation-harness does), right-padded, so a batch wastes little compute on padding.

The boundary between context and continuation follows the harness's `_encode_pair`: trailing spaces of the
context move to the continuation, then the continuation's tokens are the tail of tokenize(context +
continuation) past len(tokenize(context)). Tokenizing the continuation alone would be wrong for SentencePiece
(" A" alone gets a different leading piece than after "Answer:"). Unlike the harness's default for Hugging
Face models, the context starts with BOS when the tokenizer adds one, because Llama-family base models were
pre-trained with BOS at the start of every sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

_FALLBACK_CONTEXT = 2048


@dataclass(frozen=True)
class LogLikelihood:
    """Summed log-probability of a continuation, and whether greedy decoding would have produced it."""

    logprob: float
    greedy: bool
    tokens: int


def max_context(model: Any) -> int:
    """The model's context window in tokens (position embeddings), or 2048 when its config does not say."""
    config = model.config
    if hasattr(config, "get_text_config"):  # a vision-language model's window is its language model's
        config = config.get_text_config()
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return _FALLBACK_CONTEXT


def special_prefix(tokenizer: Any) -> list[int]:
    """[BOS] when the tokenizer puts one at the start of a text (Llama, Mistral), else [] (GPT-2)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return [bos] if ids and ids[0] == bos else []


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) with the harness's boundary rule; the context starts with BOS if any."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    prefix = special_prefix(tokenizer)
    if not prefix and not context:
        prefix = [tokenizer.eos_token_id]  # nothing to condition on: the harness uses end-of-text
    whole = prefix + encode_text(tokenizer, context + continuation)
    ctx = prefix + encode_text(tokenizer, context)
    cont = whole[len(ctx):]
    if not cont:
        raise ValueError(f"continuation {continuation!r} encodes to no tokens after context {context[-40:]!r}")
    return ctx, cont


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` without special tokens (BOS is added by the caller, once, at the very start)."""
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) if text else []


@torch.inference_mode()
def loglikelihoods(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], batch_size: int = 16
) -> list[LogLikelihood]:
    """Score every (context, continuation) pair; results come back in the order of `pairs`.

    A sequence longer than the context window loses tokens from the left of its context (the harness's rule);
    the continuation itself is always kept whole.
    """
    window = max_context(model)
    encoded = [encode_pair(tokenizer, ctx, cont) for ctx, cont in pairs]
    rows: list[tuple[list[int], list[int]]] = []
    for ctx, cont in encoded:
        if len(cont) > window:
            raise ValueError(f"a continuation of {len(cont)} tokens does not fit the {window}-token context window")
        rows.append(((ctx + cont)[-(window + 1):][:-1], cont))
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    results: list[LogLikelihood | None] = [None] * len(rows)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(rows[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, i in enumerate(chunk):
            tokens = rows[i][0]
            ids[b, : len(tokens)] = torch.tensor(tokens)
            mask[b, : len(tokens)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        for b, i in enumerate(chunk):
            length, cont = len(rows[i][0]), rows[i][1]
            logprobs = F.log_softmax(logits[b, length - len(cont):length].float(), dim=-1)  # (len(cont), V)
            target = torch.tensor(cont, device=logprobs.device)
            picked = logprobs.gather(1, target[:, None]).squeeze(1)
            greedy = bool((logprobs.argmax(dim=-1) == target).all())
            results[i] = LogLikelihood(float(picked.sum()), greedy, len(cont))
    return [r for r in results if r is not None]
