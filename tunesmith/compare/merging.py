"""A comparison's merge strategies: the runs of trained strategies combined into one run folder
(ship/combine.py, as `tunesmith merge A B --method M` does), timed, then evaluated like any strategy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tunesmith.compare.spec import MergeStrategy
from tunesmith.recipe.spec import Recipe


def merge_strategy(how: MergeStrategy, recipes: dict[str, Recipe], run_dir: Path) -> dict[str, Any]:
    """Merge the runs `how` names into `run_dir` (replacing an earlier, unfinished merge there); returns the
    measurement row: wall seconds of the merge, and where it came from (no training, so no peak of its own)."""
    from tunesmith.ship.combine import combine_runs

    begin = time.perf_counter()
    combine_runs([recipes[name].run_dir for name in how.runs], how.method, how.weights, how.density, run_dir,
                 into_base=how.into_base, seed=how.seed, overwrite=True)
    return {"wall_seconds": round(time.perf_counter() - begin, 1), "merged_from": how.runs, "method": how.method}
