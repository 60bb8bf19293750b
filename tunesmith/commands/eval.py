"""`tunesmith eval TARGET`: held-out task, general benchmarks, judge, forgetting gate (evaluate/run_eval.py)."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from tunesmith.commands.common import console, friendly
from tunesmith.recipe.registry import EVAL_SUITES


@friendly
def eval_(
    target: str = typer.Argument(..., help="run folder, adapter folder, model folder or hub id"),
    suite: Optional[str] = typer.Option(None, "--suite", help="comma-separated, any of: " + ", ".join(EVAL_SUITES)
                                        + " (default: every suite whose data is given)"),
    base: bool = typer.Option(False, "--base", help="also score the run's base model and print the changes"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="items per suite (per MMLU subject, per MT-Bench category; ppl: lines)"),
    shots: Optional[int] = typer.Option(None, "--shots", min=0, help="few-shot examples (default 5; HellaSwag 0)"),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="exit 3 if a general score falls more points "
                                             "than this with 95% confidence (implies --base)"),
    gate_rule: str = typer.Option("ci", "--gate-rule", help="ci: fail only a drop significant at 95%; "
                                  "point: fail on the observed drop alone"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="folder with mmlu/, hellaswag*.jsonl, gsm8k*.jsonl, mt_bench/"),
    mmlu: Optional[str] = typer.Option(None, "--mmlu", help="MMLU CSV folder or file, or hub id"),
    hellaswag: Optional[str] = typer.Option(None, "--hellaswag", help="HellaSwag JSONL, or hub id"),
    gsm8k: Optional[str] = typer.Option(None, "--gsm8k", help="GSM8K JSONL, or hub id"),
    heldout: Optional[str] = typer.Option(None, "--heldout", help="chat-format file to use instead of the run's split"),
    ppl_file: Optional[str] = typer.Option(None, "--ppl-file", help="raw text file for --suite ppl"),
    template: Optional[str] = typer.Option(None, "--template", help="chat template for a plain model (default: its own)"),
    out: Optional[str] = typer.Option(None, "--out", help="folder for eval.json and report.html"),
    dtype: str = typer.Option("auto", "--dtype", help="auto | bf16 | fp16 | fp32"),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="generation length (GSM8K, held-out, judge)"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", "--judge", help="OpenAI-compatible endpoint, e.g. "
                                            "http://host:8000/v1 (else $TUNESMITH_JUDGE_URL; never from a run folder)"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="judge model name at that endpoint "
                                               "(default: the first it lists)"),
    judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env", help="env var holding the judge's API key "
                                                "(default TUNESMITH_JUDGE_KEY, else OPENAI_API_KEY; never from a run folder)"),
    judge_questions: Optional[str] = typer.Option(None, "--judge-questions", help='JSONL of {"question", "reference"}'),
) -> None:
    """Score a model: held-out task, general benchmarks, perplexity, LLM judge; with --base, the forgetting report."""
    from tunesmith.evaluate.run_eval import EvalOptions, run_eval

    suites = [s.strip() for s in suite.split(",") if s.strip()] if suite else None
    outcome = run_eval(EvalOptions(
        target=target, suites=suites, base=base, limit=limit, shots=shots, max_drop=max_drop, gate_rule=gate_rule,
        data_dir=data_dir,
        mmlu=mmlu, hellaswag=hellaswag, gsm8k=gsm8k, heldout=heldout, ppl_file=ppl_file, template=template, out=out,
        dtype=dtype, batch_size=batch_size, max_new_tokens=max_new_tokens, judge_url=judge_url,
        judge_model=judge_model, judge_key_env=judge_key_env, judge_questions=judge_questions,
    ))
    print_table(outcome.record)
    console.print(f"wrote {outcome.path} and {outcome.report}")
    if outcome.failures:
        console.print(f"[bold red]forgetting gate failed[/]: {len(outcome.failures)} general score(s) fell too far")
        raise typer.Exit(3)


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
