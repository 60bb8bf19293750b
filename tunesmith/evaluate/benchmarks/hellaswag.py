"""HellaSwag (Zellers et al., 2019): pick the sensible ending of an everyday scene; `acc_norm` is primary.

Data, as published: JSON Lines with `activity_label, ctx_a, ctx_b, endings, label` (hub: `Rowan/hellaswag`,
split `validation`), found in --data-dir as `hellaswag*.jsonl`. Preprocessing is lm-evaluation-harness's
(`text` below); each ending is scored as " " + ending after the context, several tokens, all from one pass
over the context (multiple_choice.py).
"""

from __future__ import annotations

import re
from typing import Any

from tunesmith.errors import DataError
from tunesmith.evaluate.benchmarks.base import Benchmark, Outcome, RunSettings
from tunesmith.evaluate.benchmarks.multiple_choice import MultipleChoice, Prompted, score_items, summarize, with_shots
from tunesmith.evaluate.benchmarks.sources import json_rows


def load(source: str) -> list[MultipleChoice]:
    """HellaSwag items, preprocessed exactly as lm-evaluation-harness does."""
    items = []
    for row, where in json_rows("hellaswag", source, (None, "validation")):
        try:
            ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
            query = text(row["activity_label"] + ": " + ctx)
            items.append(MultipleChoice(query, tuple(text(e) for e in row["endings"]), int(row["label"])))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{where}: a HellaSwag row needs activity_label, ctx_a, ctx_b, endings, label ({e})") from None
    return items


def text(raw: str) -> str:
    """The harness's `preprocess`: drop WikiHow's bracketed artefacts (" [title]" becomes a sentence end)."""
    raw = raw.strip().replace(" [title]", ". ")
    raw = re.sub(r"\[.*?\]", "", raw)
    return raw.replace("  ", " ")


def run(model: Any, tokenizer: Any, items: list[MultipleChoice], settings: RunSettings) -> Outcome:
    prompted = []
    for i in range(min(settings.limit or len(items), len(items))):
        context, group = with_shots(items, i, settings.shots)
        prompted.append(Prompted(str(i), items[i], context, group))
    records = score_items(model, tokenizer, prompted, settings.batch_size, "hellaswag")
    result = summarize(records, ["acc", "acc_norm"])
    result["shots"] = settings.shots
    return Outcome(result, records)


BENCHMARK = Benchmark(
    name="hellaswag", summary="commonsense sentence endings (log-likelihood per character)",
    data_glob="hellaswag*.jsonl", load=load, run=run, shots=0, primary="acc_norm",
)
