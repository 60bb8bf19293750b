"""A model's shape, as the memory and time model needs it: counts of each kind of parameter.

Read from a model config (a local folder's config.json or a GGUF file's metadata; no weights are loaded) or, for `tunesmith advise`
with only a size ("7B"), a dense Llama-style shape guessed from the parameter count: hidden ~ 128 x layers
(Llama 2 7B is 4096 x 32, 13B 5120 x 40), MLP 8/3 of hidden, a 32k vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from tunesmith.errors import UserError
from tunesmith.vision.families import is_vision_config

NON_GATED = frozenset({"gpt2", "gpt_neox", "gptj", "phi", "opt", "bloom", "falcon"})
"""Families whose MLP is two matrices (up, down) instead of three (gate, up, down)."""


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    gated: bool = True
    family: str = "llama"
    extra_params: int = 0  # biases and learned positions, where the family has them
    vision_params: int = 0  # a vision-language model's vision tower and projector (plan/vision.py)

    @property
    def attention_params(self) -> int:
        """q, k, v, o projections of one layer."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return self.hidden * (2 * q + 2 * kv)

    @property
    def mlp_params(self) -> int:
        return (3 if self.gated else 2) * self.hidden * self.intermediate

    @property
    def linear_params(self) -> int:
        """The body's linear weights: what NF4 quantizes and what LoRA wraps with `all-linear`."""
        return self.layers * (self.attention_params + self.mlp_params)

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """The output head's own weights (0 when tied to the embedding)."""
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    @property
    def params(self) -> int:
        return (self.linear_params + self.embed_params + self.head_params + self.norm_params + self.extra_params
                + self.vision_params)

    def lora_params(self, r: int) -> int:
        """LoRA A and B over every linear layer of the body: r x (in + out) each."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn = r * ((self.hidden + q) * 2 + (self.hidden + kv) * 2)
        mlp = (3 if self.gated else 2) * r * (self.hidden + self.intermediate)
        return self.layers * (attn + mlp)

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of one layer's linear weights."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        mlp = [(self.hidden, self.intermediate)] * (2 if self.gated else 1) + [(self.intermediate, self.hidden)]
        return [(self.hidden, q), (self.hidden, kv), (self.hidden, kv), (q, self.hidden), *mlp]


def shape_from_config(config: Any) -> ModelShape:
    """The shape of a transformers config (text part of a multimodal one)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = _first(text, "hidden_size", "n_embd", "d_model")
    layers = _first(text, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(text, "num_attention_heads", "n_head")
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    intermediate = getattr(text, "intermediate_size", None) or getattr(text, "n_inner", None) or 4 * hidden
    family = getattr(text, "model_type", "llama")
    shape = ModelShape(hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                      intermediate=intermediate, vocab=_first(text, "vocab_size"),
                      tied=bool(getattr(config, "tie_word_embeddings", getattr(text, "tie_word_embeddings", False))),
                      gated=family not in NON_GATED, family=family)
    vision = 0
    if is_vision_config(config):
        from tunesmith.plan.vision import vision_param_counts

        vision = sum(vision_param_counts(config))
    return replace(shape, extra_params=_bias_params(text, shape), vision_params=vision)


def _bias_params(text: Any, shape: ModelShape) -> int:
    """Biases (q/k/v for Qwen2 and attention_bias models; every linear and norm for GPT-2-style models) and
    learned position embeddings."""
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    if shape.family in NON_GATED:
        per_layer = q + 2 * kv + shape.hidden + shape.intermediate + shape.hidden + 2 * shape.hidden
        positions = getattr(text, "n_positions", 0) * shape.hidden if shape.family == "gpt2" else 0
        return shape.layers * per_layer + shape.hidden + positions
    extra = 0
    if shape.family == "qwen2" or getattr(text, "attention_bias", False):
        extra += shape.layers * (q + 2 * kv)
    if getattr(text, "attention_bias", False):
        extra += shape.layers * shape.hidden  # o_proj
    if getattr(text, "mlp_bias", False):
        extra += shape.layers * ((2 if shape.gated else 1) * shape.intermediate + shape.hidden)
    return extra


def shape_from_count(params: int, vocab: int = 32000) -> ModelShape:
    """A dense Llama-style shape with about `params` parameters (hidden = 128 x layers, MLP 8/3 x hidden)."""
    if params < 1_000_000:
        raise UserError(f"a model of {params:,} parameters is too small to plan for; give at least 1M (e.g. 125M, 7B)")
    layers = max(2, round((params / 196_608) ** (1 / 3)))
    hidden = 128 * layers
    body = params - 2 * vocab * hidden
    if body > 0:  # solve 12 * layers * hidden^2 ~= body for hidden, keep the 128 multiple
        hidden = max(128, int(round((body / (12 * layers)) ** 0.5 / 128)) * 128)
    intermediate = int(round(hidden * 8 / 3 / 256)) * 256 or 256
    heads = max(1, hidden // 128)
    return ModelShape(hidden=hidden, layers=layers, heads=heads, kv_heads=heads, head_dim=hidden // heads,
                      intermediate=intermediate, vocab=vocab, tied=False)


def parse_count(text: str) -> int | None:
    """'7B' -> 7_000_000_000, '135M' -> 135_000_000, '1.5e9' -> 1_500_000_000; None if not a count."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbt]?)\s*", text.lower())
    if not match:
        return None
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2)]
    return int(float(match.group(1)) * scale)


def load_shape(model: str, trust_remote_code: bool = False) -> ModelShape:
    """The shape of a model folder, hub id (config only, from the local cache) or GGUF file (its metadata,
    no de-quantizing: plan/model_source.py), or of a count like '7B'."""
    count = parse_count(model)
    if count is not None:
        return shape_from_count(count)
    from tunesmith.plan.model_source import read_config

    try:
        config = read_config(model, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the config of model '{model}': {err}; give a model folder, a cached hub id, "
                        "a GGUF file, or a parameter count such as 7B") from None
    return shape_from_config(config)


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise UserError(f"the model config has none of {', '.join(names)}: its shape cannot be read")
