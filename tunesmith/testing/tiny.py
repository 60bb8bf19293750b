"""Tiny random-init models and a tiny trained tokenizer, so tests and the demo run in seconds, offline,
with no files from anywhere.

The models are real architectures (Llama, Qwen, Mistral, Gemma, Phi-3, GPT-2, GPT-NeoX) at 2 layers x 64
hidden, so every code path that depends on a family (module names for LoRA targets, tied embeddings,
GQA, learned vs rotary positions) is exercised, just small.

    python -c "from tunesmith.testing.tiny import save_tiny; save_tiny('llama', 'runs/tiny-llama')"
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from tunesmith.errors import UserError, suggestion

# Special tokens of `tiny_tokenizer`, in id order (Llama's 0/1/2 for unk/bos/eos, then a real pad token).
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3
_BYTE_ALPHABET = 256

_CORPUS = (
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "One day, she saw a big red ball under a tree. She wanted to play with it, but it was too high.",
    "Her mom said, \"Be careful, Lily!\" Lily smiled and said, \"I will, Mom.\"",
    "Tom had a small dog called Max. Max liked to run, jump and bark at the birds.",
    "The sun was warm and the sky was blue. They walked to the river and sat on the grass.",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:\nSummarize the text in one sentence.\n\n### Response:\nThe text is about a girl and her ball.",
    "user: What is the capital of France?\nassistant: The capital of France is Paris.",
    "system: You are a helpful assistant. Answer briefly and politely.",
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have? Answer: 3 + 5 = 8. #### 8",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9",
    "Fine-tuning adapts a pre-trained language model to a new task with a small set of good examples.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    '{"name": "get_weather", "arguments": {"city": "London"}}',
    "Every morning the children read a story, drew a picture, and shared their snacks with friends.",
    "It was a happy day. Everyone laughed, and the little bird sang a song from the top of the tree.",
)


def tiny_tokenizer(texts: list[str] | None = None, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts` (a built-in English corpus when None).

    Byte-level, so any text encodes without `<unk>` and decodes back exactly; BOS is prepended like
    Llama's. The 256 byte symbols and 4 special tokens are always present, so `vocab_size` must be at
    least 260; the result can be smaller than `vocab_size` when the texts run out of merges, so size a
    model's embeddings with `len(tokenizer)`. Training is deterministic: same texts, same tokenizer.
    """
    floor = _BYTE_ALPHABET + 4
    if vocab_size < floor:
        raise UserError(f"tiny_tokenizer vocab_size {vocab_size} is too small: byte-level BPE needs at least {floor}")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts) if texts is not None else list(_CORPUS), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=512,
        padding_side="right",
    )


def _llama_like(a: dict[str, int], head_dim: bool = True) -> dict[str, Any]:
    fields = {
        "hidden_size": a["hidden"],
        "num_hidden_layers": a["layers"],
        "num_attention_heads": a["heads"],
        "num_key_value_heads": a["kv_heads"],
        "intermediate_size": a["intermediate"],
        "max_position_embeddings": a["max_positions"],
    }
    if head_dim:  # these families default to a large fixed head_dim (128 or 256), not hidden // heads
        fields["head_dim"] = a["hidden"] // a["heads"]
    return fields


def _gemma_like(a: dict[str, int]) -> dict[str, Any]:
    # Gemma 2/3 scale queries by query_pre_attn_scalar (default 256 = their head_dim); keep them matched.
    return {**_llama_like(a), "query_pre_attn_scalar": a["hidden"] // a["heads"]}


def _gpt2(a: dict[str, int]) -> dict[str, Any]:
    return {
        "n_embd": a["hidden"],
        "n_layer": a["layers"],
        "n_head": a["heads"],
        "n_inner": a["intermediate"],
        "n_positions": a["max_positions"],
    }


def _gpt_neox(a: dict[str, int]) -> dict[str, Any]:
    return {
        "hidden_size": a["hidden"],
        "num_hidden_layers": a["layers"],
        "num_attention_heads": a["heads"],
        "intermediate_size": a["intermediate"],
        "max_position_embeddings": a["max_positions"],
    }


# model_type -> the config fields for it; GPT-2 and GPT-NeoX have no grouped-query attention.
_FIELDS: dict[str, Callable[[dict[str, int]], dict[str, Any]]] = {
    "llama": _llama_like,
    "qwen2": lambda a: _llama_like(a, head_dim=False),
    "qwen3": _llama_like,
    "mistral": _llama_like,
    "gemma": _llama_like,
    "gemma2": _gemma_like,
    "gemma3_text": _gemma_like,
    "phi3": lambda a: _llama_like(a, head_dim=False),
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
}
FAMILIES = tuple(_FIELDS)


def tiny_config(
    family: str,
    vocab_size: int,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    max_positions: int = 512,
    pad_token_id: int = PAD_ID,
    bos_token_id: int = BOS_ID,
    eos_token_id: int = EOS_ID,
    **overrides: Any,
) -> PretrainedConfig:
    """The config of a tiny `family` model, in that family's own field names.

    Token ids default to `tiny_tokenizer`'s. `overrides` are the family's native config fields
    (e.g. `tie_word_embeddings=True`); a name the family does not have is refused, not silently stored.
    """
    if family not in _FIELDS:
        raise UserError(
            f"unknown tiny model family '{family}'{suggestion(family, FAMILIES)}; use one of: {', '.join(FAMILIES)}"
        )
    if hidden % heads or heads % kv_heads:
        raise UserError(
            f"tiny_config needs hidden ({hidden}) divisible by heads ({heads}) and heads by kv_heads ({kv_heads})"
        )
    config_class = CONFIG_MAPPING[family]
    sizes = dict(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads)
    sizes.update(intermediate=intermediate, max_positions=max_positions)
    known = set(config_class().to_dict())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(f"{config_class.__name__} has no field '{unknown[0]}'{suggestion(unknown[0], known)}")
    fields = {
        **_FIELDS[family](sizes),
        "vocab_size": vocab_size,
        "pad_token_id": pad_token_id,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        **overrides,
    }
    return config_class(**fields)


def tiny_model(family: str, vocab_size: int, seed: int = 0, **kw: Any) -> PreTrainedModel:
    """A randomly initialised fp32 `family` model; the same seed gives the same weights.

    The seed is applied inside a forked RNG, so building a model does not disturb the caller's
    random state. Returned in eval mode, like `from_pretrained`. `kw` goes to `tiny_config`.
    """
    config = tiny_config(family, vocab_size, **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval()


def save_tiny(
    family: str,
    out_dir: str | Path,
    vocab_size: int = 512,
    seed: int = 0,
    texts: list[str] | None = None,
    **config_kw: Any,
) -> Path:
    """Write a complete Hugging Face folder (weights, config, generation config, tokenizer) for a tiny
    model whose vocabulary matches its tokenizer exactly; `AutoModelForCausalLM` and `AutoTokenizer`
    load it offline. Returns the folder."""
    out = Path(out_dir)
    tokenizer = tiny_tokenizer(texts, vocab_size)
    model = tiny_model(family, len(tokenizer), seed, **config_kw)
    ids = model.config
    model.generation_config = GenerationConfig(
        bos_token_id=ids.bos_token_id, eos_token_id=ids.eos_token_id, pad_token_id=ids.pad_token_id
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
