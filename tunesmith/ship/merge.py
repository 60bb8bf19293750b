"""Ship a run: `tunesmith merge` folds its adapter into the base weights (one plain model, zero adapter
latency); `tunesmith export` writes the adapter alone (hot-swapped on one served base).

    tunesmith merge runs/my-run [--out DIR] [--dtype bf16]
    tunesmith export runs/my-run --out DIR

Both read everything from the run folder (run.json: base model, adapter method, model options). A merge is
checked before anything is written: the merged model and the base-plus-adapter model run the same prompts
and their logits must agree within `parity_tolerance` (both in fp32, where the merge is exact up to rounding); the
output is cast to the chosen dtype only afterwards. Methods that are not a linear update of existing weights
(prefix and prompt tuning, bottleneck layers) cannot be merged, and `merge` says why instead of guessing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from tunesmith.adapters.build import load_adapter
from tunesmith.adapters.kinds.bottleneck import CONFIG_FILE as BOTTLENECK_CONFIG
from tunesmith.data.tokenize import tokenize_prompt
from tunesmith.data.types import Message
from tunesmith.errors import UserError
from tunesmith.models.load import DTYPES, load_model, load_tokenizer, resolve_dtype
from tunesmith.models.stored_dtype import stored_dtype
from tunesmith.runs.atomic import build_folder
from tunesmith.runs.record import RunRecord, read_run
from tunesmith.train.unwrap import unwrap_to_transformers
from tunesmith.vision.processor import parity_inputs, processor_if_vision

TOLERANCE = 1e-4
"""|logit difference| always accepted between the merged model and base + adapter, both in fp32."""
RELATIVE_TOLERANCE = 1e-5
"""...and beyond it, this fraction of the largest |logit|: fp32 rounding of W + BA grows with the logits' scale
and the depth (SmolLM2-135M, 30 layers: 1.1e-4 on a correct merge), while a wrong merge (scale, a missing
module) is off by 1e-2 or more."""
PARITY_PROMPTS = (
    "Once upon a time, there was a little girl named Lily.",
    "Summarize the text in one sentence.",
    "What is the capital of France?",
    "Write a short story about a dog who learns to swim, in three sentences.",
)


class MergeParityError(UserError):
    """The merged model does not reproduce the adapter model; nothing was written."""


@dataclass(frozen=True)
class MergeResult:
    out: Path
    max_abs_diff: float
    """Merged vs base + adapter, fp32, over every real token of PARITY_PROMPTS."""
    dtype: str
    quantized_gap: float | None = None
    """QLoRA only: merged vs the 4-bit model it was trained as (the NF4 rounding the merge removes)."""
    saved_max_abs_diff: float | None = None
    tolerance: float = TOLERANCE
    """The saved weights (in `dtype`) vs fp32 base + adapter: the rounding the saved dtype adds."""


def read_finished_run(run_dir: str | Path) -> RunRecord:
    """The run folder's record, with a clear error when it is not a finished run."""
    return read_run(run_dir).require_finished()


def merge_run(run_dir: str | Path, out: str | Path | None = None, dtype: str | None = None,
              overwrite: bool = False) -> MergeResult:
    """Merge the run's LoRA/QLoRA/DoRA/IA3 adapter into its base and write a standard HF model folder.

    The merge happens in fp32 on the unquantized base (for QLoRA too: the 4-bit base is not de-quantized,
    the original weights are loaded instead), so it needs 4 bytes per base parameter of memory; it is
    checked against base + adapter, then saved in `dtype` (default: the dtype the base checkpoint is stored
    in, not the run's compute dtype) with the run's tokenizer and chat template; parity is reported in fp32
    and again for the saved weights. Default out: RUN/merged.
    """
    info = read_finished_run(run_dir)
    kind = info.adapter_kind
    if kind.trains_base:
        raise UserError(f"run {info.path} fine-tuned every weight (adapter: {info.adapter}): {info.path / 'model'} "
                        "already is a standalone model, there is no adapter to merge")
    if not kind.merges:
        raise UserError(f"cannot merge adapter: {info.adapter}: {kind.merge_refusal}. Serve it next to its "
                        f"base instead: tunesmith export {info.path} --out DIR")
    target = Path(out) if out is not None else info.path / "merged"
    save_dtype = resolve_dtype(dtype) if dtype else stored_dtype(info.base_model)
    check_out(target, overwrite)
    tokenizer = load_tokenizer(str(info.weights_dir))
    model = load_adapter(load_base(info, tokenizer), info.weights_dir)
    processor = processor_if_vision(unwrap_to_transformers(model), str(info.weights_dir))  # a VLM saves its processor
    batch = parity_inputs(processor) if processor is not None else parity_batch(tokenizer)
    adapter_logits = logits_of(model, batch)
    merged = model.merge_and_unload()
    merged_logits = logits_of(merged, batch)
    diff = max_abs_diff(merged_logits, adapter_logits, batch["attention_mask"])
    allowed = parity_tolerance(float(adapter_logits.abs().max()))
    if not diff <= allowed:
        raise MergeParityError(
            f"the merged model's logits differ from base + adapter by up to {diff:.3g} (> {allowed:.3g}); nothing "
            f"was written. Serve the adapter unmerged instead: tunesmith export {info.path} --out DIR"
        )
    gap = None
    if kind.base_quantization is not None:
        quantized = load_adapter(load_base(info, tokenizer, quantization=kind.base_quantization), info.weights_dir)
        gap = max_abs_diff(merged_logits, logits_of(quantized, batch), batch["attention_mask"])
        del quantized
    merged = merged.to(save_dtype)
    saved_diff = diff if save_dtype == torch.float32 else max_abs_diff(logits_of(merged, batch), adapter_logits,
                                                                          batch["attention_mask"])
    saved_with = processor if processor is not None else tokenizer
    build_folder(target, lambda tmp: (merged.save_pretrained(tmp), saved_with.save_pretrained(tmp)))
    return MergeResult(out=target, max_abs_diff=diff, dtype=dtype_name(save_dtype), quantized_gap=gap,
                       saved_max_abs_diff=saved_diff, tolerance=allowed)


def parity_tolerance(logit_scale: float) -> float:
    """The largest |logit difference| a correct fp32 merge may show, for logits up to `logit_scale` in size."""
    return max(TOLERANCE, RELATIVE_TOLERANCE * logit_scale)


def export_run(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run's adapter alone (PEFT folder, or our bottleneck files) with its tokenizer and a README.

    The adapter config is pointed at the base model the run recorded (an absolute path or a hub id), so the
    folder loads from anywhere.
    """
    info = read_finished_run(run_dir)
    if info.adapter_kind.trains_base:
        raise UserError(f"run {info.path} fine-tuned every weight (adapter: {info.adapter}): it has no adapter to export; "
                        f"{info.path / 'model'} is the standalone model to serve")
    if not info.weights_dir.is_dir():
        raise UserError(f"run {info.path} has no adapter folder ({info.weights_dir}); was it moved?")
    target = Path(out)
    check_out(target, overwrite)

    def fill(tmp: Path) -> None:
        shutil.copytree(info.weights_dir, tmp, dirs_exist_ok=True)
        config_name = info.adapter_kind.config_file
        config = json.loads((tmp / config_name).read_text())
        config["base_model_name_or_path"] = info.base_model
        (tmp / config_name).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(_readme(info, target.resolve()))

    build_folder(target, fill)
    return target


def load_base(info: RunRecord, tokenizer: object, quantization: str | None = None) -> torch.nn.Module:
    """The base as the run loaded it, but in fp32, where flash attention cannot run: "auto" then picks sdpa."""
    options = info.model_options
    requested = options.get("attn_implementation", "auto")
    attention = "auto" if "flash" in requested else requested
    return load_model(info.base_model, dtype="fp32", attn_implementation=attention,
                      trust_remote_code=options.get("trust_remote_code", False), quantization=quantization, tokenizer=tokenizer)


def parity_batch(tokenizer: object) -> dict[str, torch.Tensor]:
    """PARITY_PROMPTS as the model sees them (through the run's chat template when it has one), right-padded."""
    if getattr(tokenizer, "chat_template", None):
        ids = [tokenize_prompt(tokenizer, [Message("user", text)]) for text in PARITY_PROMPTS]
    else:
        ids = [tokenizer(text)["input_ids"] for text in PARITY_PROMPTS]
    return tokenizer.pad({"input_ids": ids}, return_tensors="pt")


@torch.no_grad()
def logits_of(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's fp32 logits on `batch` (every input it holds: a VLM's pixels too; no cache: one full forward)."""
    return model(**batch, use_cache=False).logits.float()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest |a - b| over real (unpadded) positions; logits (batch, seq, vocab), mask (batch, seq)."""
    return float((a - b).abs().amax(dim=-1)[mask.bool()].max())


def check_out(target: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless --overwrite: never mix a merge into a user's files."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise UserError(f"{target} already exists and is not empty; pass --overwrite to replace it, or choose "
                        "another --out")


def dtype_name(dtype: torch.dtype) -> str:
    """The --dtype spelling of a torch dtype (fp32, bf16, ...)."""
    return next(name for name, value in DTYPES.items() if value == dtype)


PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def _load_classes(info: RunRecord) -> tuple[str, str, str]:
    """(model class, reader class, reader's name) a user loads the exported adapter with: a vision-language
    run saved its processor beside the adapter, and loads with AutoModelForImageTextToText and AutoProcessor."""
    if any((info.weights_dir / name).is_file() for name in PROCESSOR_FILES):
        return "AutoModelForImageTextToText", "AutoProcessor", "processor"
    return "AutoModelForCausalLM", "AutoTokenizer", "tokenizer"


def _readme(info: RunRecord, out: Path) -> str:
    """How to load the exported adapter: transformers + PEFT, and vLLM where it can serve the method."""
    name = info.path.name
    if not info.adapter_kind.is_peft:  # tunesmith's own format: the bottleneck adapter
        load = (
            "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "from tunesmith.adapters.bottleneck import load_bottleneck\n\n"
            f'model = load_bottleneck(AutoModelForCausalLM.from_pretrained("{info.base_model}"), "{out}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{out}")\n```\n\n'
            "This is tunesmith's own bottleneck adapter (Houlsby layers after attention and MLP), stored as "
            f"`{BOTTLENECK_CONFIG}` + `bottleneck.safetensors`; PEFT and vLLM do not know the format, so serve it "
            "with transformers and tunesmith.\n"
        )
    else:
        quantized = (
            "The adapter was trained on the base quantized to 4-bit NF4 (QLoRA); it also loads on the unquantized "
            "base. To reproduce the training setup, pass\n`quantization_config=BitsAndBytesConfig(load_in_4bit=True, "
            'bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)` to `from_pretrained`.\n\n'
            if info.adapter_kind.base_quantization is not None else ""
        )
        model_class, reader, what = _load_classes(info)
        load = (
            f"```python\nfrom peft import PeftModel\nfrom transformers import {model_class}, {reader}\n\n"
            f'base = {model_class}.from_pretrained("{info.base_model}")\n'
            f'model = PeftModel.from_pretrained(base, "{out}")\n'
            f'{what} = {reader}.from_pretrained("{out}")  # with the chat template used in training\n```\n\n'
            + quantized + _vllm_section(info, name, out)
        )
    return (
        f"# {name}: {info.adapter} adapter\n\n"
        f"Trained by tunesmith from run `{info.path}`.\n\n"
        f"- base model: `{info.base_model}`\n- adapter method: `{info.adapter}`\n\n"
        "Load the base model, then this adapter on top of it:\n\n" + load
    )


def _vllm_section(info: RunRecord, name: str, out: Path) -> str:
    if info.adapter_kind.vllm_refusal is None:
        # vLLM accepts adapters up to rank 16 unless told more; its allowed maxima are powers of two.
        rank = f" --max-lora-rank {1 << (rank_of(info) - 1).bit_length()}" if rank_of(info) > 16 else ""
        return (
            "## Serving with vLLM (hot-swappable LoRA)\n\n"
            f"```bash\nvllm serve {info.base_model} --enable-lora --lora-modules {name}={out}{rank}\n```\n\n"
            f'Requests then pick the adapter by name: `"model": "{name}"`; several `--lora-modules` can share '
            "one base.\n"
        )
    fold = f"merge it first (`tunesmith merge {info.path}`) and serve the merged folder, or " if info.adapter_kind.merges else ""
    return (
        "## Serving with vLLM\n\n"
        f"vLLM's `--enable-lora` serves plain LoRA adapters only, not `{info.adapter}`: {fold}serve base + "
        "adapter with transformers/PEFT as above.\n"
    )


def rank_of(info: RunRecord) -> int:
    """The LoRA rank the run trained with (adapter_args.r)."""
    return int(info.adapter_args.get("r", 16))
