"""`tunesmith merge` and `tunesmith export`: ship a finished run (ship/merge.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import console, friendly
from tunesmith.errors import UserError


@friendly
def merge(
    run_dirs: list[Path] = typer.Argument(..., help="run folder(s) (runs/<name>): one LoRA, QLoRA, DoRA or IA3 run to "
                                          "fold into its base, or several runs of one base with --method"),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write (default RUN_DIR/merged; with --method, "
                                       "a run folder beside the first run)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="dtype of a saved model (default: the base checkpoint's stored dtype)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
    method: Optional[str] = typer.Option(None, "--method", help="combine several runs: linear | cat | svd | ties | "
                                         "dare_linear | dare_ties | magnitude_prune | ties_svd | dare_linear_svd | "
                                         "dare_ties_svd | magnitude_prune_svd (LoRA); linear | ties | dare_linear | "
                                         "dare_ties | magnitude_prune | slerp (full runs)"),
    weights: Optional[str] = typer.Option(None, "--weights", help="one weight per run, comma-separated (default 1 each)"),
    density: Optional[float] = typer.Option(None, "--density", help="ties*, dare_*, magnitude_prune*: fraction of "
                                            "each update kept (default 0.5)"),
    into_base: bool = typer.Option(False, "--into-base", help="with --method on LoRA runs: fold the combined "
                                   "adapter into the base (a standalone model) instead of keeping an adapter"),
    seed: int = typer.Option(0, "--seed", help="DARE's random drops"),
) -> None:
    """Fold one run's adapter into its base weights (logit parity checked first), or with --method combine
    several runs of one base into one run folder (an adapter, or a model with --into-base or full runs)."""
    if method is not None or len(run_dirs) > 1:
        _combine(run_dirs, method, weights, density, out, into_base, dtype, seed, overwrite)
        return
    if into_base or weights is not None or density is not None:
        raise UserError("--into-base, --weights and --density go with --method, when several runs are combined")
    from tunesmith.ship.merge import merge_run

    result = merge_run(run_dirs[0], out, dtype, overwrite)
    console.print(f"merged (in fp32): max |logit diff| vs base + adapter = {result.max_abs_diff:.2e} "
                  f"(tolerance {result.tolerance:.2g}); saved as {result.dtype}: max |logit diff| "
                  f"{result.saved_max_abs_diff:.2e}")
    if result.quantized_gap is not None:
        console.print(f"QLoRA: merged into the unquantized base weights, not their 4-bit NF4 rounding the adapter "
                      f"was trained on; vs that 4-bit model, logits differ by up to {result.quantized_gap:.3g}")
    console.print(f"model folder: {result.out}")


def _combine(run_dirs: list[Path], method: Optional[str], weights: Optional[str], density: Optional[float],
             out: Optional[Path], into_base: bool, dtype: Optional[str], seed: int, overwrite: bool) -> None:
    from tunesmith.ship.combine import combine_runs, parse_weights

    if method is None:
        raise UserError(f"{len(run_dirs)} runs given: say how to combine them with --method (see tunesmith merge "
                        "--help: linear, cat, svd, ties, dare_ties, slerp, ...)")
    result = combine_runs(run_dirs, method, parse_weights(weights), density, out, into_base, dtype, seed, overwrite)
    made = f"a LoRA adapter of rank {result.rank}" if result.output == "adapter" else f"a model saved as {result.dtype}"
    console.print(f"merged {', '.join(result.parents)} by {result.method}: {made}")
    if result.max_abs_diff is not None:
        console.print(f"folded into the base: max |logit diff| vs base + combined adapter = {result.max_abs_diff:.2e}")
    console.print(f"run folder: {result.out} (eval, serve, export and compare take it like a run)")


@friendly
def export(
    run_dir: Path = typer.Argument(..., help="run folder (runs/<name>) of an adapter run"),
    out: Optional[Path] = typer.Option(None, "--out", help="adapter: the folder to write; gguf: the .gguf file"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output"),
    format: str = typer.Option("adapter", "--format", help="adapter (the adapter alone) | gguf (merged, for "
                               "llama.cpp and Ollama)"),
    outtype: str = typer.Option("f16", "--outtype", help="gguf weights: f16 | bf16 | q8_0 | q4_k_m | q5_k_m | q6_k "
                                "(the K-quant mixes Ollama serves)"),
) -> None:
    """Write the run's adapter alone (hot-swap serving), or with --format gguf the merged model as one GGUF file."""
    if format == "gguf":
        from tunesmith.gguf.export import export_gguf

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
    from tunesmith.ship.merge import export_run

    console.print(f"adapter folder: {export_run(run_dir, out, overwrite)} (see its README.md)")
