"""A run's judge verdicts and per-item regressions, as the run page shows them.

Both come from what `tunesmith eval` wrote into the run folder: eval.json (the judge suite's ratings and
its pairwise result against the base) and eval_samples.jsonl (every benchmark item of both models: MT-Bench's
answers, ratings, judgments and pairwise outcomes per turn; the choice items' predictions and correctness).
Regressions are the report's own (`evaluate.samples.worst_regressions`: right before, wrong after, worst
first), all of them rather than the report's ten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.evaluate.benchmarks import gated_metrics
from tunesmith.evaluate.samples import SAMPLES_FILE, read_samples, worst_regressions

MAX_REGRESSIONS = 500
"""The most regression rows the page lists (the count says how many there are in all)."""


def regressions(run_dir: Path) -> dict[str, Any]:
    """{"file", "with_base", "items", "total", "rows"}: the lost items of the gated benchmarks, worst first."""
    samples = read_samples(run_dir / SAMPLES_FILE)
    found = worst_regressions(samples, gated_metrics(), limit=None)
    return {"file": SAMPLES_FILE if samples else None, "with_base": any(r["model"] == "base" for r in samples),
            "items": sum(r["model"] == "tuned" for r in samples), "total": len(found),
            "rows": found[:MAX_REGRESSIONS]}


def verdicts(evaluation: dict[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    """The judge's verdicts: the judge suite's summary and examples, its pairwise result, and MT-Bench per
    question and turn (tuned rating, base rating, the pairwise outcome against the base, the judgment)."""
    results = (evaluation or {}).get("results") or {}
    judge = results.get("judge")
    return {
        "judge": _judge_summary(judge) if judge else None,
        "judge_examples": (judge or {}).get("examples", []),
        "judge_pairwise": results.get("judge_pairwise"),
        "mtbench": _summary(results["mtbench"]) if "mtbench" in results else None,
        "mtbench_rows": mtbench_rows(read_samples(run_dir / SAMPLES_FILE)),
    }


def mtbench_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per MT-Bench question and turn of the tuned model, with the base's rating beside it."""
    base = {r["id"]: r for r in samples if r.get("suite") == "mtbench" and r["model"] == "base"}
    rows = []
    for record in samples:
        if record.get("suite") != "mtbench" or record["model"] != "tuned":
            continue
        before = base.get(record["id"])
        for turn in (0, 1):
            rows.append({
                "id": record["id"], "category": record["category"], "turn": turn + 1,
                "question": record["turns"][turn], "answer": record["answers"][turn],
                "rating": record["ratings"][turn], "base_rating": before["ratings"][turn] if before else None,
                "pairwise": (record.get("pairwise") or [None, None])[turn],
                "judgment": (record.get("judgments") or [None, None])[turn],
            })
    return rows


def _judge_summary(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result.get(k) for k in ("score", "n", "rated", "failures")}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    pairwise = result.get("pairwise") or {}
    return {"score": result.get("score"), "turn1": result.get("turn1"), "turn2": result.get("turn2"),
            "n": result.get("n"), "failures": result.get("failures"), "win_rate": pairwise.get("win_rate"),
            "wins": pairwise.get("wins"), "losses": pairwise.get("losses"), "ties": pairwise.get("ties")}
