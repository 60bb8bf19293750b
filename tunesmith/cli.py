"""The `tunesmith` command: verbs only. Each parses its arguments, loads the recipe, calls one function.

User mistakes (`UserError`) print as one red message with exit status 2 and no traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from tunesmith.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune language models: plan, train, measure, ship.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")
console = Console(stderr=True)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show a UserError as one clear line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
            raise typer.Exit(2) from None

    return wrapper


def quiet_libraries() -> None:
    """Silence library chatter (weight-loading bars, deprecation notes) so our own output stays readable."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@app.command()
@friendly
def validate(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides"),
) -> None:
    """Check a recipe, load the model config and tokenizer, tokenize the data, print a health report."""
    from tunesmith.validate import validate_recipe

    validate_recipe(recipe, overrides or [])


@app.command()
@friendly
def train(
    recipe: Path = typer.Argument(..., help="recipe YAML"),
    overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides, e.g. train.lr=2e-5"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint of this run"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing run folder of the same name"),
    profile: bool = typer.Option(False, "--profile", help="print where step time goes (data, forward, backward, optimizer)"),
) -> None:
    """Fine-tune: the recipe's method and adapter, in one loop; writes the run folder."""
    from tunesmith.recipe import load_recipe
    from tunesmith.train.loop import train as run_training

    run_training(load_recipe(recipe, overrides or []), resume=resume, overwrite=overwrite, profile=profile)


@app.command()
@friendly
def merge(
    run_dir: Path = typer.Argument(..., help="run folder (runs/<name>) of a LoRA, QLoRA, DoRA or IA3 run"),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write the merged model (default RUN_DIR/merged)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="dtype of the saved model (default: the run's)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Fold the run's adapter into its base weights: one standard model folder; logit parity is checked first."""
    from tunesmith.merge import TOLERANCE, merge_run

    result = merge_run(run_dir, out, dtype, overwrite)
    console.print(f"merged (in fp32): max |logit diff| vs base + adapter = {result.max_abs_diff:.2e} "
                  f"(tolerance {TOLERANCE:g}); saved as {result.dtype}")
    if result.quantized_gap is not None:
        console.print(f"QLoRA: merged into the unquantized base weights, not their 4-bit NF4 rounding the adapter "
                      f"was trained on; vs that 4-bit model, logits differ by up to {result.quantized_gap:.3g}")
    console.print(f"model folder: {result.out}")


@app.command()
@friendly
def export(
    run_dir: Path = typer.Argument(..., help="run folder (runs/<name>) of an adapter run"),
    out: Optional[Path] = typer.Option(None, "--out", help="adapter: the folder to write; gguf: the .gguf file"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output"),
    format: str = typer.Option("adapter", "--format", help="adapter (the adapter alone) | gguf (merged, for "
                               "llama.cpp and Ollama)"),
    outtype: str = typer.Option("f16", "--outtype", help="gguf weights: f16 | bf16 | q8_0"),
) -> None:
    """Write the run's adapter alone (hot-swap serving), or with --format gguf the merged model as one GGUF file."""
    if format == "gguf":
        from tunesmith.gguf_export import export_gguf

        result = export_gguf(run_dir, out, outtype, overwrite)
        console.print(f"GGUF: {result.path} ({result.outtype}); read back by transformers: max |logit diff| vs "
                      f"the merged model = {result.max_abs_diff:.3g} (tolerance {result.tolerance:g})")
        console.print(f"Ollama Modelfile: {result.modelfile}")
        typer.echo(result.modelfile.read_text())
        return
    if format != "adapter":
        raise UserError(f"--format '{format}' is unknown; use adapter or gguf")
    if out is None:
        raise UserError("export --format adapter needs --out DIR")
    from tunesmith.merge import export_run

    console.print(f"adapter folder: {export_run(run_dir, out, overwrite)} (see its README.md)")


@app.command()
@friendly
def serve(
    targets: list[str] = typer.Argument(..., help="run folders, adapter folders, model folders or .gguf files "
                                        "(NAME=TARGET to pick the model id)"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="required bearer key (or env TUNESMITH_API_KEY)"),
    adapter_root: Optional[Path] = typer.Option(None, "--adapter-root", help="folder POST /v1/adapters may load from"),
    max_adapters: int = typer.Option(8, "--max-adapters", min=1, help="adapters kept in memory (LRU)"),
    queue_size: int = typer.Option(64, "--queue-size", min=1, help="waiting requests before 503"),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="rows per generation batch"),
    print_vllm: bool = typer.Option(False, "--print-vllm", help="print the equivalent vLLM command and exit"),
) -> None:
    """OpenAI-compatible server: chat and completions, streaming, adapters hot-swapped over one shared base."""
    from tunesmith.serve.server import API_KEY_ENV, ServeOptions
    from tunesmith.serve.server import serve as run_server

    if print_vllm:
        from tunesmith.serve.vllm import vllm_commands

        typer.echo(vllm_commands(targets, host, port, bool(api_key or os.environ.get(API_KEY_ENV))), nl=False)
        return
    run_server(ServeOptions(targets, host, port, api_key, adapter_root, max_adapters, queue_size, max_batch))


@app.command("eval")
@friendly
def eval_(
    target: str = typer.Argument(..., help="run folder, adapter folder, model folder or hub id"),
    suite: Optional[str] = typer.Option(None, "--suite", help="comma-separated: heldout,ppl,mmlu,hellaswag,gsm8k,judge "
                                        "(default: every suite whose data is given)"),
    base: bool = typer.Option(False, "--base", help="also score the run's base model and print the changes"),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="items per suite (per MMLU subject; ppl: lines)"),
    shots: Optional[int] = typer.Option(None, "--shots", min=0, help="few-shot examples (default 5; HellaSwag 0)"),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="exit 3 if a general score falls more points "
                                             "than this (implies --base)"),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="folder with mmlu/, hellaswag*.jsonl, gsm8k*.jsonl"),
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
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1"),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="judge model name at that endpoint"),
    judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env", help="env var with the API key (OPENAI_API_KEY)"),
    judge_questions: Optional[str] = typer.Option(None, "--judge-questions", help='JSONL of {"question", "reference"}'),
) -> None:
    """Score a model: held-out task, general benchmarks, perplexity, LLM judge; with --base, the forgetting report."""
    from tunesmith.evaluate.run_eval import EvalOptions, run_eval

    suites = [s.strip() for s in suite.split(",") if s.strip()] if suite else None
    outcome = run_eval(EvalOptions(
        target=target, suites=suites, base=base, limit=limit, shots=shots, max_drop=max_drop, data_dir=data_dir,
        mmlu=mmlu, hellaswag=hellaswag, gsm8k=gsm8k, heldout=heldout, ppl_file=ppl_file, template=template, out=out,
        dtype=dtype, batch_size=batch_size, max_new_tokens=max_new_tokens, judge_url=judge_url,
        judge_model=judge_model, judge_key_env=judge_key_env, judge_questions=judge_questions,
    ))
    if outcome.failures:
        console.print(f"[bold red]forgetting gate failed[/]: {len(outcome.failures)} general score(s) fell too far")
        raise typer.Exit(3)


@app.command()
@friendly
def report(run_dir: Path = typer.Argument(..., help="run folder (or an eval output folder)")) -> None:
    """Redraw report.html (loss curves, eval table, before/after) in a run folder; it opens offline."""
    from tunesmith.report import write_report

    console.print(f"report: {write_report(run_dir)}")


@app.command()
@friendly
def demo(
    out: Path = typer.Option(Path("runs"), "--out", help="where the demo writes its base model, data and run"),
) -> None:
    """Offline end-to-end demo: build a tiny model and data, fine-tune with LoRA, show held-out loss before/after."""
    from tunesmith.demo import run_demo

    run_demo(out)


@app.command()
def docs() -> None:
    """Print the recipe reference (every key, type, default, meaning), generated from the schema."""
    from tunesmith.recipe_docs import render_recipe_docs

    typer.echo(render_recipe_docs(), nl=False)


@data_app.command("stats")
@friendly
def data_stats(
    file: str = typer.Argument(..., help="data file, folder or hub dataset id"),
    model: str = typer.Option(..., "--model", "-m", help="model folder or hub id whose tokenizer to use"),
    format: str = typer.Option("auto", "--format", "-f", help="data format, or auto"),
    template: str = typer.Option("auto", "--template", help="chat template for models without one"),
    max_seq_len: int = typer.Option(1024, "--max-seq-len"),
) -> None:
    """The data health report for one file alone."""
    from tunesmith.validate import file_report

    file_report(file, model, format, template, max_seq_len)


if __name__ == "__main__":
    app()
