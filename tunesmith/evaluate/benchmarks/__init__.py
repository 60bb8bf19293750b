"""One module per benchmark; `tunesmith/recipe/registry.py` BENCHMARKS is the one line that registers each.

    base.py             Benchmark (the unit's description), RunSettings, Outcome
    multiple_choice.py  shared scorer of log-likelihood benchmarks: prompts -> one pass per context -> records
    sources.py          reading a local file or a hub dataset, with clear errors
    mmlu.py hellaswag.py gsm8k.py mtbench.py   the benchmarks

Adding a benchmark: write `<name>.py` defining `BENCHMARK = Benchmark(...)` and add "<name>" to
registry.BENCHMARKS.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tunesmith.evaluate.benchmarks.base import Benchmark, Outcome, RunSettings
from tunesmith.recipe.registry import BENCHMARKS

__all__ = ["Benchmark", "Outcome", "RunSettings", "gated_metrics", "get", "locate"]


def get(name: str) -> Benchmark:
    """The unit of benchmark `name` (a registry.BENCHMARKS name)."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; registered: {', '.join(BENCHMARKS)}")
    benchmark = importlib.import_module(f"{__name__}.{name}").BENCHMARK
    if benchmark.name != name:
        raise RuntimeError(f"module {name}.py defines the benchmark {benchmark.name!r}")
    return benchmark


def locate(name: str, source: str | None, data_dir: Path | None) -> str | None:
    """The source of benchmark `name`: the one given, else its file or folder in `data_dir`, else None."""
    if source:
        return source
    if data_dir is None:
        return None
    found = sorted(Path(data_dir).glob(get(name).data_glob))
    return str(found[0]) if found else None


def gated_metrics() -> dict[str, str]:
    """Benchmark -> the primary metric the forgetting gate watches (gated benchmarks only)."""
    return {name: b.primary for name in BENCHMARKS if (b := get(name)).gated}
