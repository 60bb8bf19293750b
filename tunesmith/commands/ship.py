"""`tunesmith merge` and `tunesmith export`: ship a finished run (ship/merge.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import console, friendly
from tunesmith.errors import UserError


@friendly
def merge(
    run_dir: Path = typer.Argument(..., help="run folder (runs/<name>) of a LoRA, QLoRA, DoRA or IA3 run"),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write the merged model (default RUN_DIR/merged)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="dtype of the saved model (default: the base checkpoint's stored dtype)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Fold the run's adapter into its base weights: one standard model folder; logit parity is checked first."""
    from tunesmith.ship.merge import merge_run

    result = merge_run(run_dir, out, dtype, overwrite)
    console.print(f"merged (in fp32): max |logit diff| vs base + adapter = {result.max_abs_diff:.2e} "
                  f"(tolerance {result.tolerance:.2g}); saved as {result.dtype}: max |logit diff| "
                  f"{result.saved_max_abs_diff:.2e}")
    if result.quantized_gap is not None:
        console.print(f"QLoRA: merged into the unquantized base weights, not their 4-bit NF4 rounding the adapter "
                      f"was trained on; vs that 4-bit model, logits differ by up to {result.quantized_gap:.3g}")
    console.print(f"model folder: {result.out}")


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
