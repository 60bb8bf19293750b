"""`tunesmith export RUN --format gguf [--outtype f16|bf16|q8_0]`: the run's merged model as one GGUF file for
llama.cpp and Ollama, written with the `gguf` package (no llama.cpp build needed), then checked.

RUN is a run folder (its adapter is merged first, through `merge_run` and its parity check; a full
fine-tune's model/ is taken as is) or a model folder. Families: Llama and Mistral (written as llama.cpp's
`llama` architecture, whose q/k rows are permuted to its rotary layout) and Qwen2 (`qwen2`, with its q/k/v
biases). Norms and biases stay fp32, as llama.cpp's converter keeps them; q8_0 falls back to f16 for a
matrix whose rows are not a multiple of 32 wide (llama.cpp does the same).

The check: the file is read back by transformers' GGUF reader, which must tokenize PARITY_PROMPTS to the same
ids and give logits within TOLERANCE[outtype] of the merged model's (fp32) on every token; otherwise the file
is deleted and the export fails. An Ollama Modelfile is written next to it (its TEMPLATE in Ollama's Go
syntax for tunesmith's named chat templates; a model's own template travels inside the GGUF).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunesmith.data.templates import apply_template, end_of_turn
from tunesmith.errors import UserError
from tunesmith.gguf_vocab import gguf_vocab, write_vocab
from tunesmith.merge import PARITY_PROMPTS, merge_run
from tunesmith.models import load_model, load_tokenizer
from tunesmith.ollama import modelfile_text
from tunesmith.runs.record import is_run_folder, read_run

OUTTYPES = ("f16", "bf16", "q8_0")
TOLERANCE = {"f16": 0.05, "bf16": 0.3, "q8_0": 1.0}
"""Largest |logit difference| accepted between the GGUF read back and the merged model in fp32: rounding of
the weights alone (f16 keeps 11 significant bits, bf16 8, q8_0 8 per block of 32); measured values are in
tests/test_gguf_export.py and bench/RESULTS.md."""
_ARCHS = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}


@dataclass(frozen=True)
class GGUFResult:
    path: Path
    outtype: str
    max_abs_diff: float
    tolerance: float
    modelfile: Path


def export_gguf(run: Path, out: Path | None = None, outtype: str = "f16", overwrite: bool = False) -> GGUFResult:
    """Merge (if needed), write, read back and compare; see the module docstring."""
    if outtype not in OUTTYPES:
        raise UserError(f"--outtype '{outtype}' is unknown; use one of: {', '.join(OUTTYPES)}")
    run = Path(run)
    with tempfile.TemporaryDirectory(prefix="tunesmith-gguf-") as scratch:
        folder, template, name = _model_folder(run, Path(scratch))
        path = Path(out) if out is not None else run / f"{name}-{outtype}.gguf"
        if path.exists() and not overwrite:
            raise UserError(f"{path} exists; pass --overwrite to replace it")
        tokenizer = load_tokenizer(str(folder))
        apply_template(tokenizer, template)
        model = load_model(str(folder), dtype="fp32").eval()
        path.parent.mkdir(parents=True, exist_ok=True)
        write_gguf(model, tokenizer, path, outtype, name)
        diff = round_trip_diff(model, tokenizer, path)
    if diff > TOLERANCE[outtype]:
        path.unlink()
        raise UserError(f"the GGUF read back differs from the merged model by {diff:.3g} in logits (tolerance "
                        f"{TOLERANCE[outtype]:g} for {outtype}); nothing was kept")
    modelfile = path.with_suffix(".Modelfile")
    modelfile.write_text(modelfile_text(path.name, template, end_of_turn(tokenizer, template)))
    return GGUFResult(path, outtype, diff, TOLERANCE[outtype], modelfile)


def _model_folder(run: Path, scratch: Path) -> tuple[Path, str, str]:
    """(Hugging Face model folder, chat template name, model name) for a run folder or a model folder."""
    if is_run_folder(run):
        info = read_run(run).require_finished()
        if not info.has_adapter:
            return info.weights_dir, info.template, info.name
        merge_run(run, scratch / "merged", dtype="fp32")
        return scratch / "merged", info.template, info.name
    if (run / "config.json").is_file():
        return run, "auto", run.name
    raise UserError(f"'{run}' is neither a run folder (run.json) nor a model folder (config.json)")


def write_gguf(model: Any, tokenizer: Any, path: Path, outtype: str, name: str) -> None:
    """Write `model` (fp32 weights) and `tokenizer` as GGUF at `path`."""
    import gguf

    config = model.config
    arch = _ARCHS.get(config.model_type)
    if arch is None:
        raise UserError(f"GGUF export maps {', '.join(sorted(_ARCHS))} models, not '{config.model_type}'; "
                        "use llama.cpp's convert_hf_to_gguf.py on the merged folder")
    writer = gguf.GGUFWriter(str(path), arch)
    # transformers' reader takes a file named exactly "mistral" for its own mistral mapping, which gguf-py lacks
    writer.add_name(name if name != "mistral" else "mistral-model")
    _write_config(writer, config, outtype)
    write_vocab(writer, gguf_vocab(tokenizer, config.model_type, model.get_input_embeddings().num_embeddings),
                tokenizer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.QWEN2,
                                     config.num_hidden_layers)
    for key, tensor in _tensors(model):
        gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"GGUF export has no llama.cpp name for tensor '{key}'")
        data = tensor.detach().float().cpu().numpy()
        if arch == "llama" and key.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in key else config.num_key_value_heads
            data = _permute(data, heads)
        _add_tensor(writer, gguf_name, data, outtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_config(writer: Any, config: Any, outtype: str) -> None:
    import gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    file_types = {"f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[outtype])


def _tensors(model: Any) -> list[tuple[str, torch.Tensor]]:
    """State-dict tensors to write; a tied output head is left out (llama.cpp reads token_embd for it)."""
    state = model.state_dict()
    tied = getattr(model.config, "tie_word_embeddings", False)
    return [(k, v) for k, v in state.items() if not (tied and k == "lm_head.weight") and "rotary_emb" not in k]


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary layout (halves) -> llama.cpp's (interleaved pairs), as llama.cpp's converter permutes."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _add_tensor(writer: Any, name: str, data: np.ndarray, outtype: str) -> None:
    import gguf

    if data.ndim == 1:
        writer.add_tensor(name, data.astype(np.float32))
    elif outtype == "bf16":
        writer.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16),
                          raw_dtype=gguf.GGMLQuantizationType.BF16)
    elif outtype == "q8_0" and data.shape[-1] % 32 == 0:
        writer.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                          raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
        writer.add_tensor(name, data.astype(np.float16))


def load_gguf(path: Path) -> tuple[Any, Any]:
    """A GGUF file through transformers' reader, de-quantized to fp32 (the quantizer it keeps is dropped:
    it would only make save_pretrained refuse)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError) as e:
        raise UserError(f"cannot read GGUF file {path}: {e}") from e
    model.hf_quantizer = None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


@torch.no_grad()
def round_trip_diff(model: Any, tokenizer: Any, path: Path) -> float:
    """Max |logit difference| over PARITY_PROMPTS between `model` and the GGUF read back; the GGUF's
    tokenizer must give the same ids."""
    back, back_tokenizer = load_gguf(path)
    worst = 0.0
    for prompt in PARITY_PROMPTS:
        ids = tokenizer(prompt)["input_ids"]
        theirs = back_tokenizer(prompt)["input_ids"]
        if ids != theirs:
            raise UserError(f"the GGUF's tokenizer splits {prompt!r} differently: {theirs[:12]} vs {ids[:12]}")
        batch = torch.tensor([ids])
        worst = max(worst, float((model(input_ids=batch).logits - back(input_ids=batch).logits).abs().max()))
    return worst
