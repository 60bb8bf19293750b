"""eval_samples.jsonl: one line per benchmark item and model, so a user can see what was forgotten.

Each line is the benchmark's own record (id, prompt id, choice scores, prediction, gold, correctness per
metric; answers and ratings for MT-Bench) plus `suite` and `model` ("tuned" or "base"). The worst
regressions are the items the base model got right and the tuned one got wrong, ordered by how far the
tuned model's preference moved away from the gold choice (the log-likelihood margin of gold over the
prediction), then by id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES_FILE = "eval_samples.jsonl"


def write_samples(out: Path, tuned: dict[str, list[dict[str, Any]]], base: dict[str, list[dict[str, Any]]]) -> Path:
    """Write every item record of both models; returns the file's path."""
    path = Path(out) / SAMPLES_FILE
    with path.open("w", encoding="utf-8") as handle:
        for model, records in (("tuned", tuned), ("base", base)):
            for suite, rows in records.items():
                for row in rows:
                    handle.write(json.dumps({"suite": suite, "model": model, **row}, ensure_ascii=False) + "\n")
    return path


def read_samples(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def worst_regressions(rows: list[dict[str, Any]], metric_by_suite: dict[str, str],
                      limit: int | None = 10) -> list[dict[str, Any]]:
    """Items right before and wrong after on each suite's primary metric, worst first (see module doc);
    `limit=None` keeps them all."""
    base = {(r["suite"], r["id"]): r for r in rows if r["model"] == "base"}
    found = []
    for row in rows:
        metric = metric_by_suite.get(row["suite"])
        before = base.get((row["suite"], row["id"]))
        if row["model"] != "tuned" or before is None or metric is None or metric not in row.get("correct", {}):
            continue
        if before["correct"][metric] and not row["correct"][metric]:
            key = _prediction_key(row, metric)
            found.append({"suite": row["suite"], "id": row["id"], "metric": metric, "margin": _margin(row, key),
                          "base_prediction": before.get(key), "prediction": row.get(key),
                          "gold": row.get("gold", row.get("reference"))})
    found.sort(key=lambda r: (r["margin"] if r["margin"] is not None else 0.0, r["suite"], r["id"]))
    return found[:limit]


def _prediction_key(row: dict[str, Any], metric: str) -> str:
    """The prediction the metric judged: the length-normalised choice for acc_norm, else the plain one."""
    return "prediction_norm" if metric == "acc_norm" and "prediction_norm" in row else "prediction"


def _margin(row: dict[str, Any], key: str = "prediction") -> float | None:
    """log P(gold) - log P(prediction) for a scored choice item (negative: the model now prefers a wrong one);
    unnormalised log-likelihoods, also for acc_norm's length-normalised prediction."""
    scores, gold, pred = row.get("scores"), row.get("gold"), row.get(key)
    if not isinstance(scores, list) or not isinstance(gold, int) or not isinstance(pred, int):
        return None
    return scores[gold] - scores[pred]
