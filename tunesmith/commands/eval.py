"""`tunesmith eval TARGET`: held-out task, general benchmarks, judge, forgetting gate (evaluate/run_eval.py)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tunesmith.commands.common import console, friendly
from tunesmith.commands.dataclass_command import dataclass_command
from tunesmith.evaluate.options import EvalOptions


def _evaluate(options: EvalOptions) -> None:
    from tunesmith.evaluate.run_eval import run_eval

    outcome = run_eval(options)
    print_table(outcome.record)
    console.print(f"wrote {outcome.path} and {outcome.report}")
    if outcome.failures:
        console.print(f"[bold red]forgetting gate failed[/]: {len(outcome.failures)} general score(s) fell too far")
        raise typer.Exit(3)


eval_ = friendly(dataclass_command(EvalOptions, _evaluate, "Score a model: held-out task, general benchmarks, "
                                   "perplexity, LLM judge; with --base, the forgetting report."))


def print_table(record: dict[str, Any]) -> None:
    """The results (and base, change) as a rich table on stdout; gate failures below it on stderr."""
    from tunesmith.runs.report import eval_rows

    with_base = record.get("base_results") is not None
    table = Table(title=f"eval: {record['target']['name']}")
    for column in ("suite", "metric", "n", "score", *(("base", "change") if with_base else ()), "note"):
        table.add_column(column, justify="left" if column in ("suite", "metric", "note") else "right")
    for row in eval_rows(record):
        cells = [row["suite"], row["metric"], row["n"], row["score"]]
        color = {"good": "green", "bad": "red"}.get(row["trend"])
        cells += [row["base"], f"[{color}]{row['change']}[/]" if color else row["change"]] if with_base else []
        table.add_row(*cells, row["note"])
    Console().print(table)
    for failure in record["gate"]["failures"]:
        console.print(f"[bold red]gate:[/] {failure}")
    for note in record["gate"].get("notes", []):
        console.print(f"[yellow]gate:[/] {note}")
