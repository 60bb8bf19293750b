"""Before vs after: what fine-tuning changed, how sure that is, and the gate that fails a run which forgot.

Scores that are fractions (accuracies, matches, ROUGE-L, win rates) are compared in points (percentage
points: 41.0% -> 38.5% is -2.5); losses, perplexities and judge ratings as plain differences. Where both
models were scored item by item (the benchmarks' eval_samples), a change carries its paired 95% interval
(stats.paired_change: Tango's score interval and McNemar's test). eval.json keeps every change in one unit:
`change`, `ci95` and the whole `paired` record are in points for fractions (`unit`), plain otherwise, and
`significant` says whether the 95% interval excludes zero (None: no per-item scores, so not tested), and
`text` says it in words.
`change_text` and `change_trend` word and colour a stored change for every output (console, report.html,
dashboard, compare): only a significant change is coloured. The gate watches the gated benchmarks' primary scores only (MMLU acc, HellaSwag
acc_norm, GSM8K exact match): those measure what the model knew before, which fine-tuning on a narrow task
should not erase.

Gate rules: "ci" (default) fails a score only when the whole 95% interval of its change lies below -max_drop,
and names the drops that cross the allowance without that confidence (too few items to tell); "point" fails
on the observed change alone, as a plain threshold.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tunesmith.evaluate.benchmarks import gated_metrics
from tunesmith.evaluate.stats import Z95, PairedChange, drop_is_significant, is_significant, paired_change

FRACTIONS = ("acc", "acc_norm", "exact_match", "strict_match", "normalized_match", "contains", "rouge_l", "win_rate")
LOWER_IS_BETTER = ("loss", "ppl")
COMPARED = (*FRACTIONS, *LOWER_IS_BETTER, "score")
GATE_RULES = ("ci", "point")


@dataclass(frozen=True)
class Delta:
    suite: str
    metric: str
    base: float
    tuned: float
    paired: PairedChange | None = None

    @property
    def in_points(self) -> bool:
        return self.metric in FRACTIONS

    @property
    def change(self) -> float:
        """tuned - base, in points for fractions."""
        scale = 100.0 if self.in_points else 1.0
        return (self.tuned - self.base) * scale

    @property
    def interval(self) -> tuple[float, float] | None:
        """The paired 95% interval of `change` (same unit), when both models were scored item by item."""
        if self.paired is None:
            return None
        scale = 100.0 if self.in_points else 1.0
        return self.paired.low * scale, self.paired.high * scale

    @property
    def significant(self) -> bool | None:
        """Whether the 95% interval of the change excludes zero; None without per-item scores (not tested)."""
        interval = self.interval
        return None if interval is None else is_significant(*interval)

    @property
    def improved(self) -> bool | None:
        """True when the fine-tune scores better (lower, for losses and perplexities); None when equal."""
        if self.tuned == self.base:
            return None
        return self.tuned < self.base if self.metric in LOWER_IS_BETTER else self.tuned > self.base

    @property
    def general(self) -> bool:
        """A gated benchmark's primary score: the ones the gate watches."""
        return gated_metrics().get(self.suite) == self.metric

    def as_dict(self) -> dict[str, Any]:
        unit = "points" if self.in_points else ""
        record = {**asdict(self), "change": self.change, "unit": unit, "improved": self.improved,
                  "general": self.general, "significant": self.significant}
        scale = 100.0 if self.in_points else 1.0
        record["paired"] = {**self.paired.as_dict(scale), "unit": unit} if self.paired else None
        record["ci95"] = list(self.interval) if self.interval else None
        record["p_value"] = self.paired.p_value if self.paired else None
        record["text"] = change_text(record)
        return record


def stored_significance(delta: dict[str, Any]) -> bool | None:
    """`significant` of an eval.json change; files written before it was stored decide from their `ci95`."""
    if "significant" in delta:
        return delta["significant"]
    ci = delta.get("ci95")
    return is_significant(*ci) if ci else None


def change_text(delta: dict[str, Any]) -> str:
    """An eval.json change in words: "-5.0 pts, not significant (95% CI -14.8..+4.8, p=1.00)"; without
    per-item scores "+0.0620, untested"."""
    points = delta.get("unit") == "points"
    value = f"{delta['change']:+.1f} pts" if points else f"{delta['change']:+.4f}"
    significant = stored_significance(delta)
    if significant is None:
        return f"{value}, untested"
    low, high = delta["ci95"]
    ci = f"{low:+.1f}..{high:+.1f}" if points else f"{low:+.4f}..{high:+.4f}"
    p = delta.get("p_value", (delta.get("paired") or {}).get("mcnemar_p"))
    verdict = "significant" if significant else "not significant"
    return f"{value}, {verdict} (95% CI {ci}" + (f", p={format_p(p)})" if p is not None else ")")


def change_trend(delta: dict[str, Any]) -> str:
    """"good" or "bad" for a significant change (by whether it improved), else "": what outputs colour."""
    if not stored_significance(delta):
        return ""
    improved = Delta(delta["suite"], delta["metric"], delta["base"], delta["tuned"]).improved
    return {True: "good", False: "bad"}.get(improved, "")


def format_p(p: float) -> str:
    """A p-value as printed: two decimals, three below 0.01, "<0.001" below that."""
    return "<0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def compare(tuned: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]],
            tuned_samples: dict[str, list[dict[str, Any]]] | None = None,
            base_samples: dict[str, list[dict[str, Any]]] | None = None) -> list[Delta]:
    """Every score both result sets have, suite by suite in the order of `tuned`, paired where items match."""
    deltas = []
    for suite, scores in tuned.items():
        before = base.get(suite, {})
        for metric in COMPARED:
            if isinstance(scores.get(metric), (int, float)) and isinstance(before.get(metric), (int, float)):
                paired = paired_by_item(suite, metric, tuned_samples or {}, base_samples or {})
                deltas.append(Delta(suite, metric, float(before[metric]), float(scores[metric]), paired))
    return deltas


def paired_by_item(suite: str, metric: str, tuned: dict[str, list[dict[str, Any]]],
                   base: dict[str, list[dict[str, Any]]]) -> PairedChange | None:
    """The paired change from per-item correctness (eval_samples.jsonl records by suite), matched by item id;
    None without item records, or when the tuned model was scored on items the base was not."""
    before = {r["id"]: r["correct"][metric] for r in base.get(suite, []) if metric in r.get("correct", {})}
    after = {r["id"]: r["correct"][metric] for r in tuned.get(suite, []) if metric in r.get("correct", {})}
    ids = [i for i in after if i in before]
    if not ids or len(ids) != len(after):
        return None
    return paired_change([before[i] for i in ids], [after[i] for i in ids])


def gate(deltas: list[Delta], max_drop: float, rule: str = "ci") -> tuple[list[str], list[str]]:
    """(failures, notes): one failure per watched score whose drop exceeds `max_drop` points under `rule`;
    with rule "ci", a note for each drop past the allowance that is not significant at this sample size."""
    failures, notes = [], []
    for d in deltas:
        if not d.general or round(-d.change, 9) <= max_drop:  # (0.43 - 0.45) * 100 is 2.0000000000000018 points
            continue
        observed = f"{d.suite} {d.metric} fell {-d.change:.1f} points ({100 * d.base:.1f} -> {100 * d.tuned:.1f})"
        if rule == "point" or d.interval is None:
            why = "" if rule == "point" else " (no per-item scores, so judged on the point change)"
            failures.append(f"{observed}, more than the allowed {max_drop:g} (--max-drop / eval.max_drop){why}")
            continue
        low, high = d.interval
        ci = f"95% CI {low:+.1f}…{high:+.1f}"
        if drop_is_significant(low, high, max_drop):
            failures.append(f"{observed}, {ci}: more than the allowed {max_drop:g} with 95% confidence "
                            "(--max-drop / eval.max_drop)")
        else:
            notes.append(f"{d.suite} {d.metric} {d.change:+.1f} pts, {ci}: not significant at this sample size; "
                         f"{_advice(d, max_drop)}")
    return failures, notes


def _advice(d: Delta, max_drop: float) -> str:
    """How many items would make a drop like this one decisive (standard error shrinks as 1/sqrt(n))."""
    assert d.paired is not None
    margin = (-d.change - max_drop) / 100.0
    if d.paired.se == 0 or margin <= 0:
        return "use --limit N for a decisive answer"
    needed = math.ceil(d.paired.n * (Z95 * d.paired.se / margin) ** 2)
    return f"about {needed} items would decide it (use --limit N for a decisive answer)"
