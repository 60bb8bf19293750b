"""Load the base model, its tokenizer and its config: from a local folder, a GGUF file or a hub id, in a chosen dtype,
optionally quantized to 4-bit NF4 or 8-bit with bitsandbytes.

Every user mistake (a missing folder, an unknown dtype, a hub id while offline) becomes one `UserError`
that says what to change, before transformers gets a chance to retry the network for half a minute or to
ask on stdin whether to run a repository's code.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.errors import UserError, suggestion
from tunesmith.gguf.source import converted_folder, find_gguf
from tunesmith.runs.record import is_run_folder
from tunesmith.speedups.kernels import resolve_attn_implementation
from tunesmith.vision.families import is_vision_config, vision_family

DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}
QUANTIZATIONS = ("nf4", "int8")
_QUANT_ALIASES = {"4bit": "nf4", "qlora": "nf4", "bnb4": "nf4", "8bit": "int8", "bnb8": "int8"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_CPUINFO = Path("/proc/cpuinfo")


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype for a recipe's `dtype` string.

    "auto" picks bf16 only where the hardware computes it natively: a CUDA GPU that reports bf16 support
    (Ampere or newer), or a CPU whose /proc/cpuinfo lists `avx512_bf16` or `amx_bf16` (on this CPU bf16
    trains ~1.7x faster than fp32). Elsewhere it is fp32: fp16 needs loss scaling to train safely, and
    emulated bf16 on an older CPU is slower than fp32, so neither is a safe automatic choice.
    """
    key = name.strip().lower()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if key not in DTYPES:
        raise UserError(
            f"unknown dtype '{name}'{suggestion(key, ['auto', *DTYPES])}; "
            f"use one of: auto, {', '.join(DTYPES)}"
        )
    return DTYPES[key]


def load_dtype_name(adapter: str, setting: str) -> str:
    """The dtype a training run loads its base in: fp32 master weights for full fine-tuning (autocast lowers
    the matmuls), the recipe's `model_options.dtype` for adapters. The trainer and `plan` both read it here."""
    return "fp32" if ADAPTER_KINDS[adapter].trains_base else setting


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (Linux only; elsewhere we cannot tell cheaply, so False)."""
    try:
        text = _CPUINFO.read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def load_tokenizer(path_or_id: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer, ready for training: right padding and a pad token.

    A tokenizer without a pad token (Llama, stories260k) gets pad = eos. That is safe here because our
    collators build labels from their own masks and set padded positions to IGNORE_INDEX; they never
    find padding by comparing token ids to `pad_token_id`, so real EOS tokens are still trained on.
    Reusing an existing token also keeps the vocabulary, and so the embedding matrix, unchanged.
    """
    source, local_only = resolve_source(path_or_id, need_config=False)
    tokenizer = AutoTokenizer.from_pretrained(
        source, trust_remote_code=trust_remote_code, local_files_only=local_only
    )
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise UserError(
                f"the tokenizer of '{path_or_id}' has no pad, eos or unk token to pad with; "
                "add a pad token to its tokenizer_config.json"
            )
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


def load_config(path_or_id: str, trust_remote_code: bool = False) -> PretrainedConfig:
    """The model's config alone, without its weights (what `validate` needs, in milliseconds)."""
    source, local_only = resolve_source(path_or_id)
    _check_model_type(source, trust_remote_code)
    return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local_only)


def load_model(
    path_or_id: str,
    dtype: str = "auto",
    attn_implementation: str = "sdpa",
    trust_remote_code: bool = False,
    quantization: str | None = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    compute_dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """The causal LM (or vision-language model: `AutoModelForImageTextToText`, vision/families.py) in `dtype`, with `config.pad_token_id` set; full weights stay on CPU for accelerate to place.

    `quantization`: "nf4" (4-bit NormalFloat with double quantization and compute in `dtype`: the QLoRA
    base) or "int8" (LLM.int8()), both through bitsandbytes; None keeps full weights. On a CUDA machine
    bitsandbytes places quantized weights on the current device, so create the Accelerator first.
    A missing `pad_token_id` is taken from `tokenizer` when given, else from eos, the same choice
    `load_tokenizer` makes, so the two always agree.
    `attn_implementation` takes the recipe's values, "auto" included (kernels.resolve_attn_implementation);
    `compute_dtype` is the dtype attention runs in when autocast differs from the weights' dtype. What was
    used is `model.config._attn_implementation`.
    """
    torch_dtype = resolve_dtype(dtype)
    attention = resolve_attn_implementation(attn_implementation, compute_dtype or torch_dtype)
    source, local_only = resolve_source(path_or_id)
    config = _check_model_type(source, trust_remote_code)
    if config is None:  # a hub id: its config by transformers' own lookup (the local cache when offline)
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=local_only)
    vision = vision_family(config) if is_vision_config(config) else None
    auto = AutoModelForImageTextToText if vision is not None else AutoModelForCausalLM
    kwargs: dict[str, Any] = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code, local_files_only=local_only)
    if quantization is not None:  # a VLM's vision tower and projector stay in full precision (QLoRA on the LM)
        kwargs["quantization_config"] = _bnb_config(quantization, torch_dtype, vision.not_quantized() if vision else None)
    try:
        model = auto.from_pretrained(source, attn_implementation=attention, **kwargs)
    except ValueError as e:  # e.g. Gemma 2 has no SDPA path (its attention soft-capping needs eager)
        if "does not support" not in str(e) or "attention" not in str(e).lower():
            raise
        if attn_implementation != "auto":
            raise UserError(
                f"model '{path_or_id}' does not support attn_implementation '{attn_implementation}'; "
                "set it to 'auto' or 'eager' (always available)"
            ) from e
        # "auto" chose flash attention for a model class without a flash path: the model's own default.
        model = auto.from_pretrained(source, attn_implementation=None, **kwargs)
    if getattr(model.config, "pad_token_id", None) is None:
        _set_pad_token_id(model, tokenizer)
    if quantization is not None:
        keep_4bit_layout(model)
    return model


def _set_pad_token_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> None:
    generation = model.generation_config
    if tokenizer is not None:
        pad = tokenizer.pad_token_id
    else:
        pad = getattr(model.config, "eos_token_id", None)
        if pad is None and generation is not None:
            pad = generation.eos_token_id
    if isinstance(pad, list):
        pad = pad[0] if pad else None
    model.config.pad_token_id = pad
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = pad


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights count once.

    bitsandbytes packs two 4-bit values per byte, so a `Params4bit` reports half (or less) of its real
    numel; its `quant_state.shape` keeps the original shape, which is what we count.
    """
    trainable = total = 0
    for param in model.parameters():
        n = _true_numel(param)
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def _true_numel(param: torch.nn.Parameter) -> int:
    if hasattr(param, "ds_numel"):  # partitioned by DeepSpeed ZeRO-3: this rank holds a slice (or nothing)
        return int(param.ds_numel)
    if type(param).__name__ != "Params4bit":
        return param.numel()
    state = getattr(param, "quant_state", None)
    if state is not None:
        return state.shape.numel()
    # Not yet quantized (e.g. on the meta device): storage bytes, two values per byte.
    return param.numel() * 2 * param.element_size()


def _bnb_config(quantization: str, compute_dtype: torch.dtype, skip: list[str] | None = None) -> Any:
    if quantization not in QUANTIZATIONS:
        raise UserError(
            f"unknown quantization '{quantization}'{suggestion(quantization, QUANTIZATIONS, _QUANT_ALIASES)}; "
            f"use one of: {', '.join(QUANTIZATIONS)}, or leave it empty for full weights"
        )
    if importlib.util.find_spec("bitsandbytes") is None:  # transformers would fail later and less clearly
        raise UserError(f"quantization '{quantization}' needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True, llm_int8_skip_modules=skip,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def resolve_source(path_or_id: str, need_config: bool = True) -> tuple[str, bool]:
    """(what to pass to from_pretrained, local_files_only).

    An existing folder loads offline. Anything else is a hub id, tried from the local cache when the hub
    is offline or unreachable; transformers would otherwise retry the network for ~25 s before failing.
    `need_config` is False for tokenizers, whose folder may hold tokenizer files alone.
    """
    gguf_file = find_gguf(path_or_id)
    if gguf_file is not None:  # converted once into a Hugging Face folder in the cache
        return str(converted_folder(gguf_file)), True
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        if is_run_folder(path) and not (path / "config.json").is_file():
            raise UserError(
                f"'{path_or_id}' is a tunesmith run folder, not a model; use {path / 'model'} (full fine-tuning), "
                f"or `tunesmith merge {path_or_id}` to turn its adapter into a model"
            )
        if not need_config and not any((path / name).is_file() for name in _TOKENIZER_FILES):
            raise UserError(f"folder '{path_or_id}' holds no tokenizer ({', '.join(_TOKENIZER_FILES)})")
        if need_config and not (path / "config.json").is_file():
            hint = (
                " It holds an adapter (adapter_config.json): use its base model here and load the adapter on top."
                if (path / "adapter_config.json").is_file()
                else ""
            )
            raise UserError(f"model folder '{path_or_id}' has no config.json, so it is not a Hugging Face model.{hint}")
        return str(path), True
    if path.exists():
        raise UserError(f"model '{path_or_id}' is a file; give the folder that holds config.json and the weights, or a .gguf file")
    if not _HUB_ID.match(path_or_id):
        raise UserError(f"model folder '{path_or_id}' does not exist; check the path")
    if _hub_offline() or not _hub_reachable():
        if not _in_hub_cache(path_or_id):
            reason = "the hub is offline (HF_HUB_OFFLINE)" if _hub_offline() else "the hub can't be reached"
            raise UserError(
                f"model '{path_or_id}' is not a local folder and {reason}, and it is not in the local cache; "
                "give the path of a downloaded model folder, or download it first on a machine with access"
            )
        return path_or_id, True
    return path_or_id, False


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _hub_offline() -> bool:
    """Offline per the environment now; huggingface_hub reads HF_HUB_OFFLINE only once, at import."""
    from huggingface_hub import constants

    def truthy(var: str) -> bool:
        return os.environ.get(var, "").upper() in {"1", "ON", "YES", "TRUE"}

    return truthy("HF_HUB_OFFLINE") or truthy("TRANSFORMERS_OFFLINE") or constants.HF_HUB_OFFLINE


@functools.lru_cache(maxsize=1)
def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick request to the hub endpoint; any HTTP answer, even an error status, means reachable."""
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return True


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _check_model_type(source: str, trust_remote_code: bool) -> dict[str, Any] | None:
    """Refuse a local model that transformers does not know, before it asks on stdin or fails vaguely; its
    config.json as a dict (None for a hub id)."""
    config_file = Path(source) / "config.json"
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{config_file} is not valid JSON: {e}") from e
    model_type = config.get("model_type")
    if model_type is None:
        raise UserError(f"{config_file} has no model_type, so transformers cannot tell which architecture it is")
    if model_type in CONFIG_MAPPING or trust_remote_code:
        return config
    if "auto_map" in config:
        raise UserError(
            f"model '{source}' ships its own Python code (auto_map in config.json) for model_type "
            f"'{model_type}'; read that code, then set trust_remote_code: true if you trust it"
        )
    raise UserError(
        f"{config_file}: model_type '{model_type}' is unknown to this transformers version"
        f"{suggestion(model_type, CONFIG_MAPPING.keys())}"
    )


def keep_4bit_layout(model: torch.nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel.

    On a CPU with AVX512-BF16, bitsandbytes 0.50 repacks a Linear4bit's weight the first time the layer runs
    in eval mode without gradients (our evaluation before step 1), and then (1) fails with "N must be
    divisible by block_n" when out_features is not a multiple of 32 (stories260k's MLP is 172 wide), and
    (2) keeps the repacked layout for the training steps that follow, whose logits then move (measured:
    1.7e-3 on a tiny Llama). Unpacked, evaluation and training compute the same way, on any width.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
