"""Preference pairs with pictures -> the processor's batches that DPO scores on a vision-language model.

Each pair becomes two image chats, prompt + chosen and prompt + rejected, each carrying the prompt's pictures,
encoded by the processor exactly as SFT's image chats are (collate.py) with `train_on: last`: labels on the final
answer only (its end-of-turn token included, the newline a template writes after it not, as for text pairs in
data/pairs.py), never on the prompt or an image token. A micro-batch of B pairs is one right-padded batch of 2B
rows, the chosen answers first, as text DPO's (methods/shared/preference.py); its pixel inputs are the pictures
of those rows in row order, so one forward scores both sides with their pictures, for the policy and for the
reference alike.

Too long: a row longer than `train.max_seq_len` loses the end of its answer (the prompt's pictures cannot be cut;
their tokens reaching past the limit is an error), and a pair with an answer left without a token is dropped
with a note. `data.max_prompt_len` does not apply: cutting a prompt from its start could cut a picture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.console import Console

from tunesmith.data.types import Conversation, Example, Preference
from tunesmith.errors import UserError
from tunesmith.recipe.spec import Recipe
from tunesmith.train.unwrap import unwrap_to_transformers
from tunesmith.vision.collate import Encoded, collate, encode
from tunesmith.vision.processor import load_processor

console = Console(stderr=True)


@dataclass(frozen=True)
class ImagePair:
    """A pair as the two image chats the model scores, and their encodings (length, the answer's span)."""

    chosen: Conversation
    rejected: Conversation
    encoded: tuple[Encoded, Encoded]


@dataclass(frozen=True)
class ImagePlan:
    """What the DPO objective plans its micro-batches from: the pairs of each split and how to batch them."""

    train: list[ImagePair]
    held_out: list[ImagePair]
    collate: Callable[[list[ImagePair]], dict[str, torch.Tensor]]
    processor: Any
    """The processor the batches come from; the run saves it beside the adapter."""


def _scores_a_token(encoded: Encoded, max_len: int) -> bool:
    return any(start < min(end, max_len) for start, end in encoded.spans)


def image_pairs(processor: Any, examples: Sequence[Example], max_len: int) -> tuple[list[ImagePair], int]:
    """(the pairs with both answers scoring a token within `max_len`, how many were dropped)."""
    pairs, dropped = [], 0
    for ex in examples:
        if not isinstance(ex, Preference):
            raise UserError(f"expected preference rows (prompt, chosen, rejected), got a {type(ex).__name__} row")
        chosen, rejected = Conversation(ex.prompt + ex.chosen, ex.images), Conversation(ex.prompt + ex.rejected, ex.images)
        encoded = (encode(processor, chosen, "last"), encode(processor, rejected, "last"))
        if all(_scores_a_token(e, max_len) for e in encoded):
            pairs.append(ImagePair(chosen, rejected, encoded))
        else:
            dropped += 1
    return pairs, dropped


def collate_image_pairs(processor: Any, pairs: Sequence[ImagePair], max_len: int,
                        image_token_id: int | None) -> dict[str, torch.Tensor]:
    """B pairs as one batch of 2B rows from the processor, the chosen answers first, labels on the answers."""
    convs = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    encoded = [p.encoded[0] for p in pairs] + [p.encoded[1] for p in pairs]
    return collate(processor, convs, encoded, max_len, image_token_id)


def plan_image_pairs(recipe: Recipe, data: Any, model: torch.nn.Module) -> ImagePlan:
    """The run's pairs with pictures, through the processor of `recipe.model`."""
    processor = load_processor(recipe.model, recipe.model_options.trust_remote_code)
    max_len = recipe.train.max_seq_len
    image_token_id = getattr(unwrap_to_transformers(model).config, "image_token_id", None)
    train, dropped = image_pairs(processor, data.train_examples, max_len)
    held_out, held_dropped = image_pairs(processor, data.eval_examples, max_len)
    if not train:
        raise UserError(f"no preference pair keeps an answer token within train.max_seq_len={max_len}; raise it")
    if dropped or held_dropped:
        console.print(f"note: dropped {dropped + held_dropped} pairs with an answer cut to nothing within "
                      f"train.max_seq_len={max_len}")
    if recipe.data.max_prompt_len is not None:
        console.print("note: data.max_prompt_len is not applied on a vision-language model (a prompt's pictures "
                      "cannot be cut); rows longer than train.max_seq_len lose the end of their answer")
    return ImagePlan(train, held_out, lambda items: collate_image_pairs(processor, items, max_len, image_token_id),
                     processor)
