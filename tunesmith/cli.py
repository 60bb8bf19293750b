"""The `tunesmith` command: registers each verb of `tunesmith/commands/` (one module per verb).

User mistakes (`UserError`) print as one red message with exit status 2 and no traceback (commands/common.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
"""Before torch loads OpenMP: idle pool threads sleep instead of spinning. On cores other processes also want
(a laptop, a shared server, CI, tokenizing workers), spinning threads starve the working one and every op waits
at its barrier: training the stories260k model ran 12-15x faster with PASSIVE on a loaded 2-core machine
(`python -m bench.omp_wait`, bench/RESULTS.md). A user's own OMP_WAIT_POLICY is kept."""

import typer  # noqa: E402 -- after the policy, which must precede torch's import anywhere below

from tunesmith import __version__  # noqa: E402
from tunesmith.commands import advise, compare, demo, docs, eval, plan, report, serve, ship, train, ui, validate  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune language models: plan, train, measure, ship.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tunesmith {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print tunesmith's version and exit")) -> None:
    """Fine-tune language models: plan, train, measure, ship."""


app.command()(advise.advise)
app.command()(plan.plan)
app.command()(validate.validate)
app.command()(train.train)
app.command("eval")(eval.eval_)
app.command()(report.report)
app.command()(compare.compare)
app.command()(ship.merge)
app.command()(ship.export)
app.command()(serve.serve)
app.command()(ui.ui)
app.command()(demo.demo)
app.command()(docs.docs)
data_app.command("stats")(validate.data_stats)

if __name__ == "__main__":
    app()
