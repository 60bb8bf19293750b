"""The scorer shared by log-likelihood benchmarks (MMLU, HellaSwag): prompts -> choice scores -> records.

Each choice is scored as the log-likelihood of " " + choice after the prompt (the harness's target
delimiter), one forward pass per context (below). `acc` picks the most likely choice; `acc_norm`
divides each log-likelihood by the choice's length in characters (the harness's normalisation, which removes
the bias towards short endings).

Few-shot examples follow lm-evaluation-harness's `first_n` sampler when shots come from the evaluated split:
the first k + 1 items of the pool, less the item itself, first k. Every item past the first k + 1 therefore
shares the same examples, so their common prefix runs once (KV cache) for the whole pool.

Scoring every choice of a question with one forward pass over its context, not one pass per choice:
Multiple-choice benchmarks ask for log P(continuation | context) for several continuations of the same
context. Scoring each (context, continuation) pair as its own sequence (loglik.py) runs the context once per
choice and forms full-vocabulary logits at every position. Here, per batch of questions:

  1. the few-shot prefix that a group of questions shares (same subject, same examples) runs once; its KV
     cache is copied into every row of the group's batches;
  2. the rest of each context runs once, left-padded, and the head runs only at its last position: that
     gives the first token of every choice (all of MMLU's answer letters);
  3. choices of several tokens (HellaSwag endings) continue from the context's cache, one row per choice,
     the head running only over those few continuation tokens.

Tokens are exactly those of the per-pair scorer (`loglik.encode_pair`: the context's own tokenization, the
continuation the tail of tokenize(context + continuation)), so the sums are the same up to float rounding.
A prefix is reused only when it is token-for-token identical in every row, whatever the tokenizer merges at
the text boundary. Models that cannot take a KV cache (PEFT prompt learning: prefix/prompt tuning) and
contexts that overflow the window fall back to the per-pair scorer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import Progress

from tunesmith.evaluate.loglik import encode_pair, loglikelihoods, max_context
from tunesmith.evaluate.stats import proportion
from tunesmith.models.padding import left_pad, token_positions


@dataclass(frozen=True)
class MultipleChoice:
    """A question scored by comparing the log-likelihood of each choice after `query`."""

    query: str
    choices: tuple[str, ...]
    gold: int
    subject: str = ""


@dataclass(frozen=True)
class Prompted:
    """An item with its full prompt; `group` names the few-shot examples it shares with other items."""

    id: str
    item: MultipleChoice
    context: str
    group: str


def first_n_shots(pool_size: int, item: int, k: int) -> list[int]:
    """Indices of the k examples for `item`: the first k + 1 of the pool without the item, then the first k."""
    return [j for j in range(min(k + 1, pool_size)) if j != item][:k]


def with_shots(pool: Sequence[MultipleChoice], i: int, k: int, header: str = "") -> tuple[str, str]:
    """(prompt of item i after `header` and its k examples, the examples' group key)."""
    shots = first_n_shots(len(pool), i, k)
    examples = "".join(f"{pool[j].query} {pool[j].choices[pool[j].gold]}\n\n" for j in shots)
    return header + examples + pool[i].query, ",".join(map(str, shots))


def score_items(model: Any, tokenizer: Any, prompted: list[Prompted], batch_size: int,
                label: str) -> list[dict[str, Any]]:
    """One record per item: id, subject, choice log-likelihoods, predictions, gold, correctness per metric."""
    requests = [ChoiceRequest(p.context, tuple(" " + c for c in p.item.choices),
                              f"{p.item.subject}|{p.group}" if p.group else None) for p in prompted]
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{label}: scoring {len(requests)} items", total=len(requests))
        scores = score_choices(model, tokenizer, requests, batch_size,
                               on_batch=lambda n: progress.advance(task, n))
    records = []
    for p, lls in zip(prompted, scores):
        per_char = [ll / max(len(c), 1) for ll, c in zip(lls, p.item.choices)]
        pred, pred_norm = _argmax(lls), _argmax(per_char)
        records.append({
            "id": p.id, "subject": p.item.subject, "scores": [round(s, 6) for s in lls], "prediction": pred,
            "prediction_norm": pred_norm, "gold": p.item.gold,
            "correct": {"acc": pred == p.item.gold, "acc_norm": pred_norm == p.item.gold},
        })
    return records


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # the first of equal maxima, as numpy's argmax


def summarize(records: list[dict[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Each metric's accuracy over `records`, with its standard error and Wilson 95% interval."""
    result: dict[str, Any] = {"n": len(records), "intervals": {}}
    for metric in metrics:
        estimate = proportion([r["correct"][metric] for r in records])
        result[metric] = estimate.value
        result["intervals"][metric] = {"se": estimate.se, "ci95": [estimate.low, estimate.high]}
    return result


MIN_SHARED_PREFIX = 16
"""A group's shared prefix is cached only when at least this many tokens long (else it is not worth a pass)."""


@dataclass(frozen=True)
class ChoiceRequest:
    """One question: its context, its candidate continuations, and the key of the group sharing its prefix."""

    context: str
    continuations: tuple[str, ...]
    group: str | None = None


@dataclass(frozen=True)
class _Encoded:
    context: list[int]
    continuations: list[list[int]]


def encode_request(tokenizer: Any, request: ChoiceRequest) -> _Encoded:
    """The per-pair scorer's tokens; the context tokens are the same for every choice by construction."""
    pairs = [encode_pair(tokenizer, request.context, c) for c in request.continuations]
    return _Encoded(pairs[0][0], [cont for _, cont in pairs])


def supports_kv_cache(model: Any) -> bool:
    """False for PEFT prompt learning (it owns past_key_values or shifts positions with virtual tokens)."""
    peft_config = getattr(model, "active_peft_config", None)
    return not (peft_config is not None and getattr(peft_config, "is_prompt_learning", False))


@torch.inference_mode()
def score_choices(model: Any, tokenizer: Any, requests: Sequence[ChoiceRequest], batch_size: int = 16,
                  share_prefix: bool = True, on_batch: Callable[[int], None] | None = None) -> list[list[float]]:
    """Summed log-probability of every continuation of every request, in order (one list per request);
    `on_batch(n)` is told after each n requests scored (a progress bar)."""
    encoded = [encode_request(tokenizer, r) for r in requests]
    window = max_context(model)
    results: list[list[float] | None] = [None] * len(requests)
    fallback = [i for i, e in enumerate(encoded)
                if not supports_kv_cache(model) or len(e.context) + max(map(len, e.continuations)) - 1 > window]
    if fallback:
        pairs = [(requests[i].context, c) for i in fallback for c in requests[i].continuations]
        flat = iter(r.logprob for r in loglikelihoods(model, tokenizer, pairs, batch_size))
        for i in fallback:
            results[i] = [next(flat) for _ in requests[i].continuations]
        if on_batch:
            on_batch(len(fallback))
    rest = [i for i in range(len(requests)) if results[i] is None]
    for group in _groups(requests, encoded, rest, share_prefix):
        prefix = _shared_prefix([encoded[i].context for i in group]) if share_prefix else []
        cache = _run_prefix(model, prefix) if prefix else None
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            scores = _score_batch(model, [encoded[i] for i in chunk], prefix, cache)
            for i, row in zip(chunk, scores):
                results[i] = row
            if on_batch:
                on_batch(len(chunk))
    return [r if r is not None else [] for r in results]


def _groups(requests: Sequence[ChoiceRequest], encoded: list[_Encoded], indices: list[int],
            share_prefix: bool) -> list[list[int]]:
    """Requests with the same group key (2 or more) together; the rest in one pool; longest first in each."""
    keyed: dict[str, list[int]] = {}
    for i in indices:
        key = requests[i].group if share_prefix else None
        keyed.setdefault(key if key is not None else "", []).append(i)
    groups, pool = [], keyed.pop("", [])
    for members in keyed.values():
        if len(members) > 1:
            groups.append(members)
        else:
            pool.extend(members)
    by_length = [sorted(g, key=lambda i: -len(encoded[i].context)) for g in groups]
    return by_length + ([sorted(pool, key=lambda i: -len(encoded[i].context))] if pool else [])


def _shared_prefix(contexts: list[list[int]]) -> list[int]:
    """The longest token prefix common to all `contexts`, leaving every context at least one token of its own."""
    if len(contexts) < 2:
        return []
    first, limit = contexts[0], min(map(len, contexts)) - 1
    n = 0
    while n < limit and all(c[n] == first[n] for c in contexts):
        n += 1
    return first[:n] if n >= MIN_SHARED_PREFIX else []


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _forward(model: Any, **inputs: Any) -> Any:
    """model(**inputs) with the head at the last position only, where the model accepts `logits_to_keep`."""
    try:
        return model(**inputs, logits_to_keep=1)
    except TypeError as e:
        if "logits_to_keep" not in str(e):
            raise
        out = model(**inputs)
        out.logits = out.logits[:, -1:]
        return out


def _run_prefix(model: Any, prefix: list[int]) -> Any:
    """The KV cache of the shared prefix (batch 1)."""
    ids = torch.tensor([prefix], device=_device(model))
    return _forward(model, input_ids=ids, use_cache=True).cache


def _expand(cache: Any, rows: list[int]) -> Any:
    """A copy of `cache` holding batch rows `rows` (a row may repeat); the original stays intact."""
    copied = copy.deepcopy(cache)
    copied.batch_select_indices(torch.tensor(rows, device=_device_of_cache(copied)))
    return copied


def _device_of_cache(cache: Any) -> torch.device:
    layer = cache.layers[0]
    return layer.keys.device if getattr(layer, "keys", None) is not None else torch.device("cpu")


def _score_batch(model: Any, batch: list[_Encoded], prefix: list[int], cache: Any) -> list[list[float]]:
    """Scores for one batch: context pass (head at its last token), then a pass over longer choices."""
    device, p = _device(model), len(prefix)
    tails = [e.context[p:] for e in batch]
    ids, own = left_pad(tails, 0)  # every context ends in the last column
    mask = torch.cat([torch.ones((len(batch), p), dtype=torch.long), own], dim=1)
    position_ids = token_positions(own, start=p)
    multi = any(len(c) > 1 for e in batch for c in e.continuations)
    past = _expand(cache, [0] * len(batch)) if cache is not None else None
    if multi and past is None:
        from transformers import DynamicCache

        past = DynamicCache()
    out = _forward(model, input_ids=ids.to(device), attention_mask=mask.to(device),
                   position_ids=position_ids.to(device), cache=past, use_cache=multi)
    first = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): the first token of every choice
    scores = [[float(first[b, cont[0]]) for cont in e.continuations] for b, e in enumerate(batch)]
    if multi:
        _add_continuations(model, batch, scores, out.cache, mask, [p + len(t) for t in tails])
    return scores


def _add_continuations(model: Any, batch: list[_Encoded], scores: list[list[float]], cache: Any,
                       context_mask: torch.Tensor, context_lengths: list[int]) -> None:
    """Add the log-probabilities of every choice's tokens after its first, from the context's cache."""
    rows = [(b, j) for b, e in enumerate(batch) for j, cont in enumerate(e.continuations) if len(cont) > 1]
    device = _device(model)
    width = max(len(batch[b].continuations[j]) - 1 for b, j in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    own = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (b, j) in enumerate(rows):  # right padding: inputs are the choice's tokens but its last
        tokens = batch[b].continuations[j][:-1]
        ids[r, :len(tokens)] = torch.tensor(tokens)
        own[r, :len(tokens)] = 1
    picked = [b for b, _ in rows]
    mask = torch.cat([context_mask[picked], own], dim=1)
    positions = torch.tensor([context_lengths[b] for b in picked])[:, None] + torch.arange(width)[None, :]
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                   cache=_expand(cache, picked), use_cache=True).logits
    logprobs = F.log_softmax(logits.float(), dim=-1)  # (rows, width, V); width is a few tokens
    for r, (b, j) in enumerate(rows):
        target = torch.tensor(batch[b].continuations[j][1:], device=logprobs.device)
        scores[b][j] += float(logprobs[r, : len(target)].gather(1, target[:, None]).sum())
