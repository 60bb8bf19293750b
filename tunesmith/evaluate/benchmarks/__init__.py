"""One module per benchmark, registered in one line each in BENCHMARKS below.

    base.py             Benchmark (the unit's description), RunSettings, Outcome
    multiple_choice.py  shared scorer of log-likelihood benchmarks: prompts -> one pass per context -> records
    sources.py          reading a local file or a hub dataset, with clear errors
    mmlu.py hellaswag.py gsm8k.py mtbench.py   the benchmarks

Adding a benchmark: write `<name>.py` defining `BENCHMARK = Benchmark(...)` and add `<name>.BENCHMARK` to
BENCHMARKS. Registration is a plain tuple of imported records, no module named in a string. The recipe's
`eval.suite` (and `tunesmith eval --help`) read the names from this tuple, so a benchmark module stays light:
torch, transformers and httpx are imported inside the functions that score, never at its top.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.evaluate.benchmarks import gsm8k, hellaswag, mmlu, mtbench
from tunesmith.evaluate.benchmarks.base import Benchmark, Outcome, RunSettings

BENCHMARKS: tuple[Benchmark, ...] = (
    mmlu.BENCHMARK,
    hellaswag.BENCHMARK,
    gsm8k.BENCHMARK,
    mtbench.BENCHMARK,
)
BY_NAME: dict[str, Benchmark] = {benchmark.name: benchmark for benchmark in BENCHMARKS}
BENCHMARK_NAMES: tuple[str, ...] = tuple(BY_NAME)

__all__ = ["BENCHMARKS", "BENCHMARK_NAMES", "BY_NAME", "Benchmark", "Outcome", "RunSettings", "gated_metrics", "get",
           "locate"]


def get(name: str) -> Benchmark:
    """The unit of benchmark `name` (one of BENCHMARK_NAMES)."""
    if name not in BY_NAME:
        raise KeyError(f"unknown benchmark {name!r}; registered: {', '.join(BENCHMARK_NAMES)}")
    return BY_NAME[name]


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
    return {b.name: b.primary for b in BENCHMARKS if b.gated}
