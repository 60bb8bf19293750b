"""What a benchmark is: one unit (module) that knows its data, prompts, scorer, shots and primary metric.

A benchmark module defines `BENCHMARK = Benchmark(...)`; its entry in `tunesmith/evaluate/benchmarks/__init__.py`'s
BENCHMARKS is its registration. Nothing else in the
evaluation names a benchmark: the command finds its data in --data-dir with `data_glob`, scores it with
`run`, gates it on `primary` when `gated`, and (for judged benchmarks) compares tuned with base by `compare`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunSettings:
    """How to score: the command line's choices, resolved (shots already defaulted to the benchmark's)."""

    limit: int | None
    shots: int
    batch_size: int = 16
    max_new_tokens: int = 256
    end_of_turn: str = ""
    judge: Any = None  # a judge.JudgeClient, for benchmarks with needs_judge


@dataclass
class Outcome:
    """A benchmark's scores (eval.json `results[name]`) and one record per item (eval_samples.jsonl)."""

    result: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark, everything about it in one place."""

    name: str
    summary: str
    data_glob: str
    """Where it sits in a --data-dir (a glob; the first match is its source)."""
    load: Callable[[str], Any]
    """Source (file, folder or hub id) -> items; reads and validates everything before a model is loaded."""
    run: Callable[[Any, Any, Any, RunSettings], Outcome]
    """(model, tokenizer, items, settings) -> scores and per-item records."""
    shots: int
    """The default number of few-shot examples (lm-evaluation-harness's)."""
    primary: str
    """The score the forgetting gate watches and the report leads with."""
    gated: bool = True
    """Whether the forgetting gate checks it (a general-knowledge score measured in points)."""
    needs_judge: bool = False
    compare: Callable[[Outcome, Outcome, RunSettings], dict[str, Any]] | None = None
    """(tuned, base, settings) -> a pairwise result, for benchmarks that compare answers rather than scores."""
