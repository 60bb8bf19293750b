"""The scorer shared by log-likelihood benchmarks (MMLU, HellaSwag): prompts -> choice scores -> records.

Each choice is scored as the log-likelihood of " " + choice after the prompt (the harness's target
delimiter), one forward pass per context (context_scoring.py). `acc` picks the most likely choice; `acc_norm`
divides each log-likelihood by the choice's length in characters (the harness's normalisation, which removes
the bias towards short endings).

Few-shot examples follow lm-evaluation-harness's `first_n` sampler when shots come from the evaluated split:
the first k + 1 items of the pool, less the item itself, first k. Every item past the first k + 1 therefore
shares the same examples, so their common prefix runs once (KV cache) for the whole pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.progress import Progress

from tunesmith.evaluate.context_scoring import ChoiceRequest, score_choices
from tunesmith.evaluate.stats import proportion


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
