"""`tunesmith export RUN --format gguf [--outtype f16|bf16|q8_0|q4_k_m|q5_k_m|q6_k]`: the run's merged model as
one GGUF file for llama.cpp and Ollama, written with the `gguf` package (no llama.cpp build needed), then checked.

RUN is a run folder (its adapter is merged first, through `merge_run` and its parity check; a full
fine-tune's model/ is taken as is) or a model folder. Families: Llama and Mistral (written as llama.cpp's
`llama` architecture, whose q/k rows are permuted to its rotary layout) and Qwen2 (`qwen2`, with its q/k/v
biases). Norms and biases stay fp32, as llama.cpp's converter keeps them; q8_0 falls back to f16 for a
matrix whose rows are not a multiple of 32 wide (llama.cpp does the same). q4_k_m, q5_k_m and q6_k are
llama-quantize's mixes of K-quants (gguf/types.py), encoded by tunesmith's port of llama.cpp's reference
encoders (gguf/kquants.py), since the `gguf` package can only read K-quants.

The check: the file is read back by transformers' GGUF reader, which must tokenize PARITY_PROMPTS to the same
ids and give logits within TOLERANCE[outtype] of the merged model's (fp32) on every token; otherwise the file
is deleted and the export fails. An Ollama Modelfile is written next to it (its TEMPLATE in Ollama's Go
syntax for tunesmith's named chat templates, and for a model's own template when it renders as ChatML or
Llama 3; the template also travels inside the GGUF).
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
from tunesmith.gguf.types import OUTTYPES, encode, file_type, tensor_type
from tunesmith.gguf.vocab import gguf_vocab, write_vocab
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.runs.record import is_run_folder, read_run
from tunesmith.ship.merge import PARITY_PROMPTS, merge_run
from tunesmith.ship.ollama import modelfile_text

TOLERANCE = {"f16": 0.05, "bf16": 0.3, "q8_0": 1.5, "q6_k": 4.0, "q5_k_m": 10.0, "q4_k_m": 12.0}
"""Largest |logit difference| accepted between the GGUF read back and the merged model in fp32: rounding of
the weights alone (f16 keeps 11 significant bits, bf16 8, q8_0 8 per block of 32, the K-quant mixes about
6.6, 5.7 and 4.9 bits per weight). Measured on SmolLM2-135M (logits span about 40), the largest difference
over every vocabulary entry at every position of PARITY_PROMPTS: q8_0 1.06, q6_k 2.45, q5_k_m 6.61, q4_k_m 7.73 (its
576-wide rows take llama.cpp's Q8_0/Q5_1/Q5_0 fallbacks, and its weights come from a Q4_1 file, whose grid
Q5_1 fits worse than Q4_K does); the bounds leave about 1.5x of that. A misplaced byte gives
garbage logits, far past them; tests/test_gguf_kquants.py checks the encoders more closely."""
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
    modelfile.write_text(modelfile_text(path.name, template, end_of_turn(tokenizer, template), tokenizer))
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
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for key, tensor in _tensors(model):
        gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"GGUF export has no llama.cpp name for tensor '{key}'")
        data = tensor.detach().float().cpu().numpy()
        if arch == "llama" and key.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_attention_heads if "q_proj" in key else config.num_key_value_heads
            data = _permute(data, heads)
        if data.ndim == 1:
            writer.add_tensor(gguf_name, data.astype(np.float32))
            continue
        values, raw_dtype = encode(data, tensor_type(gguf_name, data.shape[-1], outtype, config.num_hidden_layers,
                                                     tied))
        writer.add_tensor(gguf_name, values, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _write_config(writer: Any, config: Any, outtype: str) -> None:

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
    writer.add_file_type(file_type(outtype))


def _tensors(model: Any) -> list[tuple[str, torch.Tensor]]:
    """State-dict tensors to write; a tied output head is left out (llama.cpp reads token_embd for it)."""
    state = model.state_dict()
    tied = getattr(model.config, "tie_word_embeddings", False)
    return [(k, v) for k, v in state.items() if not (tied and k == "lm_head.weight") and "rotary_emb" not in k]


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary layout (halves) -> llama.cpp's (interleaved pairs), as llama.cpp's converter permutes."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


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
