"""General benchmarks, scored as lm-evaluation-harness scores them, to measure what fine-tuning costs.

MMLU and HellaSwag compare the log-likelihood of each choice after the prompt (loglik.py): `acc` picks the
most likely choice; HellaSwag also reports `acc_norm`, the likelihood divided by the choice's length in
characters (the harness's normalisation, which removes the bias towards short endings). GSM8K generates a
solution greedily and compares its last number with the reference's `#### N` (`exact_match`, the harness's
"flexible extract"; `strict_match` needs the model to write `#### N` itself).

Prompts are raw text, not chat: the same prompt for a base model and its fine-tune, so differences are the
model's. K-shot examples come from the same file (the same subject for MMLU), excluding the item itself,
chosen by a generator seeded with the item's index: the same prompt on every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from tunesmith.evaluate.benchmark_data import MultipleChoice, Problem, load_gsm8k, load_hellaswag, load_mmlu
from tunesmith.evaluate.generate import generate
from tunesmith.evaluate.loglik import encode_text, loglikelihoods, special_prefix
from tunesmith.evaluate.textmetrics import final_answer, last_number

PRIMARY: dict[str, str] = {"mmlu": "acc", "hellaswag": "acc_norm", "gsm8k": "exact_match"}
"""The score of each benchmark that the forgetting gate watches."""
DEFAULT_SHOTS: dict[str, int] = {"mmlu": 5, "hellaswag": 0, "gsm8k": 5}
"""The harness's defaults."""
GSM8K_STOP = ("Question:", "\n\n")
_SEED = 1234


def fewshot_indices(n: int, item: int, k: int) -> list[int]:
    """`k` distinct indices in range(n), never `item`, the same for the same (n, item, k)."""
    others = [j for j in range(n) if j != item]
    return random.Random(_SEED + item).sample(others, min(k, len(others)))


def mmlu_prompt(items: list[MultipleChoice], i: int, shots: int) -> str:
    subject = items[i].subject.replace("_", " ")
    header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    examples = [f"{items[j].query} {items[j].choices[items[j].gold]}" for j in fewshot_indices(len(items), i, shots)]
    return header + "".join(e + "\n\n" for e in examples) + items[i].query


def hellaswag_prompt(items: list[MultipleChoice], i: int, shots: int) -> str:
    examples = [f"{items[j].query} {items[j].choices[items[j].gold]}" for j in fewshot_indices(len(items), i, shots)]
    return "".join(e + "\n\n" for e in examples) + items[i].query


def gsm8k_prompt(problems: list[Problem], i: int, shots: int) -> str:
    examples = [f"Question: {problems[j].question}\nAnswer: {problems[j].answer}"
                for j in fewshot_indices(len(problems), i, shots)]
    return "".join(e + "\n\n" for e in examples) + f"Question: {problems[i].question}\nAnswer:"


def score_multiple_choice(
    model: Any, tokenizer: Any, items: list[MultipleChoice], prompts: list[str], batch_size: int
) -> tuple[list[bool], list[bool]]:
    """(correct by raw log-likelihood, correct by log-likelihood per character) for each item."""
    pairs = [(prompt, " " + choice) for prompt, item in zip(prompts, items) for choice in item.choices]
    scores = [r.logprob for r in loglikelihoods(model, tokenizer, pairs, batch_size)]
    raw, norm, at = [], [], 0
    for item in items:
        lls = scores[at:at + len(item.choices)]
        at += len(item.choices)
        per_char = [ll / max(len(choice), 1) for ll, choice in zip(lls, item.choices)]
        raw.append(_argmax(lls) == item.gold)
        norm.append(_argmax(per_char) == item.gold)
    return raw, norm


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # the first of equal maxima, as numpy's argmax


def run_mmlu(model: Any, tokenizer: Any, subjects: dict[str, list[MultipleChoice]], *, limit: int | None,
             shots: int, batch_size: int = 16) -> dict[str, Any]:
    """Accuracy over all questions (micro-average) and per subject; `limit` applies per subject."""
    per_subject: dict[str, dict[str, float]] = {}
    all_correct: list[bool] = []
    for subject, items in sorted(subjects.items()):
        chosen = range(min(limit or len(items), len(items)))
        prompts = [mmlu_prompt(items, i, shots) for i in chosen]
        correct, _ = score_multiple_choice(model, tokenizer, [items[i] for i in chosen], prompts, batch_size)
        per_subject[subject] = {"acc": _mean(correct), "n": len(correct)}
        all_correct += correct
    return {"acc": _mean(all_correct), "n": len(all_correct), "shots": shots, "subjects": per_subject}


def run_hellaswag(model: Any, tokenizer: Any, items: list[MultipleChoice], *, limit: int | None, shots: int,
                  batch_size: int = 16) -> dict[str, Any]:
    chosen = range(min(limit or len(items), len(items)))
    prompts = [hellaswag_prompt(items, i, shots) for i in chosen]
    raw, norm = score_multiple_choice(model, tokenizer, [items[i] for i in chosen], prompts, batch_size)
    return {"acc": _mean(raw), "acc_norm": _mean(norm), "n": len(raw), "shots": shots}


def run_gsm8k(model: Any, tokenizer: Any, problems: list[Problem], *, limit: int | None, shots: int,
              batch_size: int = 8, max_new_tokens: int = 256) -> dict[str, Any]:
    chosen = list(range(min(limit or len(problems), len(problems))))
    prefix = special_prefix(tokenizer)
    prompts = [prefix + encode_text(tokenizer, gsm8k_prompt(problems, i, shots)) for i in chosen]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=GSM8K_STOP,
                       batch_size=batch_size)
    references = [final_answer(problems[i].answer) for i in chosen]
    flexible = [last_number(out) == ref for out, ref in zip(outputs, references)]
    strict = [final_answer(out) == ref for out, ref in zip(outputs, references)]
    examples = [{"question": problems[i].question, "prediction": out.strip(), "reference": ref}
                for i, out, ref in list(zip(chosen, outputs, references))[:3]]
    return {"exact_match": _mean(flexible), "strict_match": _mean(strict), "n": len(chosen), "shots": shots,
            "examples": examples}


def _mean(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


LOADERS: dict[str, Callable[[str], Any]] = {"mmlu": load_mmlu, "hellaswag": load_hellaswag, "gsm8k": load_gsm8k}
"""Benchmark name (registry.BENCHMARKS) -> reader of its source."""


def run_benchmark(name: str, model: Any, tokenizer: Any, data: Any, *, limit: int | None, shots: int | None,
                  batch_size: int, max_new_tokens: int) -> dict[str, Any]:
    """Score benchmark `name` on `data` (what `LOADERS[name]` returned); `shots=None` is the harness default."""
    k = DEFAULT_SHOTS[name] if shots is None else shots
    if name == "mmlu":
        return run_mmlu(model, tokenizer, data, limit=limit, shots=k, batch_size=batch_size)
    if name == "hellaswag":
        return run_hellaswag(model, tokenizer, data, limit=limit, shots=k, batch_size=batch_size)
    return run_gsm8k(model, tokenizer, data, limit=limit, shots=k, batch_size=batch_size, max_new_tokens=max_new_tokens)
