"""`tunesmith merge` and `tunesmith export`: ship a finished run (merge.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import console, friendly


@friendly
def merge(
    run_dir: Path = typer.Argument(..., help="run folder (runs/<name>) of a LoRA, QLoRA, DoRA or IA3 run"),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write the merged model (default RUN_DIR/merged)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="dtype of the saved model (default: the base checkpoint's stored dtype)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Fold the run's adapter into its base weights: one standard model folder; logit parity is checked first."""
    from tunesmith.merge import TOLERANCE, merge_run

    result = merge_run(run_dir, out, dtype, overwrite)
    console.print(f"merged (in fp32): max |logit diff| vs base + adapter = {result.max_abs_diff:.2e} "
                  f"(tolerance {TOLERANCE:g}); saved as {result.dtype}: max |logit diff| "
                  f"{result.saved_max_abs_diff:.2e}")
    if result.quantized_gap is not None:
        console.print(f"QLoRA: merged into the unquantized base weights, not their 4-bit NF4 rounding the adapter "
                      f"was trained on; vs that 4-bit model, logits differ by up to {result.quantized_gap:.3g}")
    console.print(f"model folder: {result.out}")


@friendly
def export(
    run_dir: Path = typer.Argument(..., help="run folder (runs/<name>) of an adapter run"),
    out: Path = typer.Option(..., "--out", help="where to write the adapter folder"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Write the run's adapter alone, for hot-swap serving on its base, with a README on how to load it."""
    from tunesmith.merge import export_run

    console.print(f"adapter folder: {export_run(run_dir, out, overwrite)} (see its README.md)")
