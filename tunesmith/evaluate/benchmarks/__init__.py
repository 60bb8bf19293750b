"""One module per benchmark, registered in one entry each in BENCHMARKS below.

    base.py             Benchmark (the unit's description), RunSettings, Outcome
    multiple_choice.py  shared scorer of log-likelihood benchmarks: prompts -> one pass per context -> records
    sources.py          reading a local file or a hub dataset, with clear errors
    mmlu.py hellaswag.py gsm8k.py mtbench.py   the benchmarks

Adding a benchmark: write `<name>.py` defining `BENCHMARK = Benchmark(...)`, and add to BENCHMARKS its name
with a function that imports the module and returns that record.

Why a name and a loader, not the records themselves (as methods/__init__.py has): the recipe validates
`eval.suite` and `tunesmith eval --help` lists the suites, both on every start, while the benchmark modules
are implementations (judge prompts, data readers, scorers, statistics: about 40 ms of imports, a tenth of
the command line's start). Each loader is a typed import of its own module, no module named in a string;
`get` checks that the record it returns carries the name it is registered under.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tunesmith.evaluate.benchmarks.base import Benchmark, Outcome, RunSettings


def _mmlu() -> Benchmark:
    from tunesmith.evaluate.benchmarks import mmlu

    return mmlu.BENCHMARK


def _hellaswag() -> Benchmark:
    from tunesmith.evaluate.benchmarks import hellaswag

    return hellaswag.BENCHMARK


def _gsm8k() -> Benchmark:
    from tunesmith.evaluate.benchmarks import gsm8k

    return gsm8k.BENCHMARK


def _mtbench() -> Benchmark:
    from tunesmith.evaluate.benchmarks import mtbench

    return mtbench.BENCHMARK


BENCHMARKS: dict[str, Callable[[], Benchmark]] = {
    "mmlu": _mmlu,
    "hellaswag": _hellaswag,
    "gsm8k": _gsm8k,
    "mtbench": _mtbench,
}
"""Name -> the benchmark's record, loaded on first use: the one table of benchmarks."""
BENCHMARK_NAMES: tuple[str, ...] = tuple(BENCHMARKS)

__all__ = ["BENCHMARKS", "BENCHMARK_NAMES", "Benchmark", "Outcome", "RunSettings", "gated_metrics", "get", "locate"]


def get(name: str) -> Benchmark:
    """The unit of benchmark `name` (one of BENCHMARK_NAMES)."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; registered: {', '.join(BENCHMARK_NAMES)}")
    benchmark = BENCHMARKS[name]()
    if benchmark.name != name:
        raise RuntimeError(f"BENCHMARKS registers {name!r}, but its module defines the benchmark {benchmark.name!r}")
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
    return {name: b.primary for name in BENCHMARK_NAMES if (b := get(name)).gated}
