"""The GPU speed switches of `model_options`: the attention kernel, and Liger's fused Triton kernels.

Both change speed and memory, not what is learned, so the defaults (`auto`) take the fast path only where it
can run (a CUDA GPU with the package installed) and otherwise train with plain PyTorch, which is what a CPU
machine, a CI runner or a laptop needs. Asked for explicitly, the two differ, on purpose:

* `kernels: liger` without CUDA or the package falls back with one warning. Liger replaces elementwise ops
  (RMSNorm, RoPE, SwiGLU); without it a run needs somewhat more memory and time, nothing else changes.
* `attn_implementation: flash_attention_2` without CUDA or flash_attn is a `UserError`. Packed rows under
  sdpa need an explicit block-diagonal mask, quadratic in `train.max_seq_len`, which also bars sdpa's own
  flash backend; a run sized for flash attention could run out of memory partway or run much slower, so
  failing at the start, with the fix, is cheaper. `auto` is the setting that falls back.

What was used (not what was asked) is what `build_trainer` prints and records in run.json.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from tunesmith.errors import UserError, suggestion
from tunesmith.recipe.registry import ATTN_IMPLEMENTATIONS, KERNELS

FLASH_PACKAGES = {
    "flash_attention_2": ("flash_attn", "flash-attn"),
    "flash_attention_3": ("flash_attn_interface", "flash-attn-3"),
}
"""Attention implementation -> (module that must be importable, what to pip install)."""
HALF = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class KernelChoice:
    """What `apply_kernels` did: `used` is "liger" or "none"; `note` says why a requested "liger" is not used."""

    used: str
    note: str | None = None


def installed(module: str) -> bool:
    """True when `module` is installed; checked without importing it, so asking costs nothing."""
    return importlib.util.find_spec(module) is not None


def attention_dtype(load_dtype: torch.dtype, mixed_precision: str) -> torch.dtype:
    """The dtype attention computes in: the weights' when they are half precision, else autocast's (bf16/fp16
    mixed precision over fp32 master weights, as full fine-tuning runs), else fp32."""
    if load_dtype in HALF:
        return load_dtype
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, load_dtype)


def flash_problem(implementation: str, compute_dtype: torch.dtype) -> str | None:
    """Why flash attention `implementation` cannot run here, or None when it can."""
    module, package = FLASH_PACKAGES[implementation]
    if not torch.cuda.is_available():
        return "needs a CUDA GPU, and none is available"
    if not installed(module):
        return f"needs the {module} package (pip install {package})"
    if compute_dtype not in HALF:
        return (f"computes in bf16 or fp16, but this run computes in {str(compute_dtype).removeprefix('torch.')} "
                "(set model_options.dtype: bf16, or train.mixed_precision: bf16)")
    return None


def resolve_attn_implementation(requested: str, compute_dtype: torch.dtype) -> str | None:
    """The `attn_implementation` to hand to transformers for the recipe's `model_options.attn_implementation`.

    "auto" is flash_attention_2 where `flash_problem` finds nothing in its way, else None: transformers' own
    default, which is sdpa where the model has an sdpa path and eager where it has not (Gemma 2), so the
    default setting loads every model. An explicit flash implementation that cannot run is a `UserError`
    (see the module docstring for why it does not fall back).
    """
    if requested not in ATTN_IMPLEMENTATIONS:
        raise UserError(
            f"model_options.attn_implementation: unknown value '{requested}'"
            f"{suggestion(requested, ATTN_IMPLEMENTATIONS)}; use one of: {', '.join(ATTN_IMPLEMENTATIONS)}"
        )
    if requested == "auto":
        return "flash_attention_2" if flash_problem("flash_attention_2", compute_dtype) is None else None
    if requested in FLASH_PACKAGES:
        problem = flash_problem(requested, compute_dtype)
        if problem:
            raise UserError(f"model_options.attn_implementation: {requested} {problem}; or set "
                            "model_options.attn_implementation: auto (flash attention where it can run, else sdpa)")
    return requested


def needs_flat_batches(model: torch.nn.Module) -> bool:
    """True when packed micro-batches must be one flat row: the model attends with a flash kernel.

    transformers' flash path finds sample boundaries from `position_ids` only for a batch of one row
    (see tunesmith/data/packing.py); a PEFT wrapper answers `.config` with its base model's.
    """
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None) or ""
    return "flash" in implementation


def liger_problem() -> str | None:
    """Why Liger kernels cannot run here, or None when they can."""
    missing = [] if torch.cuda.is_available() else ["a CUDA GPU"]
    if not (installed("liger_kernel") and installed("triton")):
        missing.append("`pip install liger-kernel`")
    return f"needs {' and '.join(missing)}" if missing else None


def apply_kernels(model: torch.nn.Module, requested: str) -> KernelChoice:
    """Patch `model` in place with Liger kernels when `requested` ("auto" | "none" | "liger") asks and they can run.

    Call it on the bare transformers model, before an adapter wraps it (Liger looks the patch up by
    `config.model_type` and swaps modules of the model it is given). Liger's fused linear cross-entropy stays
    off: our objectives compute their losses from the logits they ask for and never pass `labels` to the
    model, so it would not run, and leaving it off keeps transformers' own `forward` (with `logits_to_keep`).
    Liger swaps the model family's RMSNorm, RoPE and MLP in transformers' module for the whole process.
    """
    if requested not in KERNELS:
        raise UserError(f"model_options.kernels: unknown value '{requested}'{suggestion(requested, KERNELS)}; "
                        f"use one of: {', '.join(KERNELS)}")
    if requested == "none":
        return KernelChoice("none")
    problem = liger_problem()
    if problem is None:
        problem = _patch_with_liger(model)
        if problem is None:
            return KernelChoice("liger")
    if requested == "auto":
        return KernelChoice("none")
    return KernelChoice("none", f"model_options.kernels: liger {problem}; running without it")


def _patch_with_liger(model: torch.nn.Module) -> str | None:
    """Apply Liger to `model`; the reason it could not, or None."""
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance
    except ImportError as e:  # e.g. a liger-kernel release that does not match this transformers
        return f"could not be imported ({e})"
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return f"has no kernels for model type '{model_type}'"
    _apply_liger_kernel_to_instance(model=model, cross_entropy=False, fused_linear_cross_entropy=False)
    return None
