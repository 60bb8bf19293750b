"""A Hugging Face fast tokenizer as GGUF tokenizer metadata, in the two layouts llama.cpp (and transformers'
GGUF reader) know for the families we export:

    gpt2    byte-level BPE (Qwen2, SmolLM2, Llama 3, tunesmith's tiny tokenizer): tokens in the byte alphabet
            spelling of tokenizer.json, and its merges
    llama   SentencePiece-style BPE with byte fallback (Llama 2, Mistral, stories260k): pieces with "▁",
            scores, byte tokens <0x..>, and the merges

Token types follow llama.cpp: 1 normal, 2 unknown, 3 control (special tokens), 4 user-defined (added, not
special), 6 byte. Rows of an embedding matrix larger than the vocabulary get placeholder tokens [PAD<i>],
as llama.cpp's converter writes them, so the token list is exactly as long as the model's vocabulary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import UserError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6
_BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
PRE_TOKENIZERS = {"qwen2": "qwen2"}
"""model_type -> tokenizer.ggml.pre; others get "default" (GPT-2's split, what a byte-level BPE uses)."""


@dataclass(frozen=True)
class GGUFVocab:
    model: str
    pre: str | None
    tokens: list[str]
    scores: list[float]
    types: list[int]
    merges: list[str]
    add_bos: bool


def gguf_vocab(tokenizer: Any, model_type: str, rows: int) -> GGUFVocab:
    """The GGUF view of `tokenizer` for a model of `model_type` with `rows` embedding rows."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    bpe = spec["model"]
    if bpe.get("type") != "BPE":
        raise UserError(f"GGUF export handles BPE tokenizers (byte-level or SentencePiece-style), not {bpe.get('type')}")
    byte_level = "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or "ByteLevel" in json.dumps(spec.get("decoder"))
    by_id = {index: token for token, index in bpe["vocab"].items()}
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    by_id.update({index: t["content"] for index, t in added.items()})
    size = max(rows, max(by_id) + 1)
    if size > rows:
        raise UserError(f"the tokenizer has {max(by_id) + 1} tokens but the model only {rows} embedding rows")
    tokens, types = [], []
    for index in range(size):
        token = by_id.get(index, f"[PAD{index}]")
        tokens.append(token)
        types.append(_token_type(token, index, added, tokenizer.unk_token_id, bool(bpe.get("byte_fallback"))))
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe.get("merges", [])]
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    add_bos = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
    scores = [-float(i) for i in range(size)]  # merges are given, so scores only order the pieces
    pre = PRE_TOKENIZERS.get(model_type, "default") if byte_level else None
    return GGUFVocab("gpt2" if byte_level else "llama", pre, tokens, scores, types, merges, add_bos)


def _token_type(token: str, index: int, added: dict[int, Any], unk_id: int | None, byte_fallback: bool) -> int:
    if index == unk_id:
        return UNKNOWN
    if index in added:
        return CONTROL if added[index].get("special") else USER_DEFINED
    if token.startswith("[PAD"):
        return USER_DEFINED
    if byte_fallback and _BYTE_TOKEN.match(token):
        return BYTE
    return NORMAL


def write_vocab(writer: Any, vocab: GGUFVocab, tokenizer: Any) -> None:
    """Tokenizer keys: model, tokens, scores, types, merges, special ids, BOS flag, chat template."""
    writer.add_tokenizer_model(vocab.model)
    if vocab.pre:
        writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    if vocab.merges:
        writer.add_token_merges(vocab.merges)
    for add, token_id in ((writer.add_bos_token_id, tokenizer.bos_token_id), (writer.add_eos_token_id,
                          tokenizer.eos_token_id), (writer.add_unk_token_id, tokenizer.unk_token_id),
                          (writer.add_pad_token_id, tokenizer.pad_token_id)):
        if token_id is not None:
            add(token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
