"""SFT of a vision-language model on image chats: the objective `method: sft` builds for a VLM.

Batches come from the model's processor (collate.py), one conversation a row, padded on the right: packing
across images is not exact for every family (Qwen2-VL's 3-D positions, Idefics3's per-image masks), so it is
off here, with a note when the recipe asked for it. The loss is the token-mean NLL of assistant tokens,
normalised by the loop over the whole step, reaching the head by `trained_nll_sum` (logits at trained positions
only). The order of rows is a seeded permutation per epoch, a function of the step alone, so resume is exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate import Accelerator
from rich.console import Console

from tunesmith.data.types import Conversation
from tunesmith.errors import UserError
from tunesmith.methods.language_modeling.objective import trained_nll_sum
from tunesmith.methods.shared.token_nll import count_trained_tokens
from tunesmith.recipe.spec import Recipe
from tunesmith.train.objective import Batch
from tunesmith.train.unwrap import unwrap_to_transformers
from tunesmith.vision.collate import Encoded, collate, encode
from tunesmith.vision.processor import load_processor

console = Console(stderr=True)


class ImageChats:
    """Conversations, their encodings and a seeded batch order over them."""

    def __init__(self, processor: Any, examples: Any, train_on: str, max_len: int) -> None:
        convs = [ex for ex in examples if isinstance(ex, Conversation)]
        if len(convs) != len(examples):
            raise UserError("method: sft on a vision-language model trains on conversations (chat rows); "
                            f"{len(examples) - len(convs)} rows are of another kind")
        encoded = [encode(processor, conv, train_on) for conv in convs]
        keep = [i for i, e in enumerate(encoded) if any(start < max_len for start, _ in e.spans)]
        self.dropped = len(convs) - len(keep)  # no answer token left within train.max_seq_len
        self.convs = [convs[i] for i in keep]
        self.encoded = [encoded[i] for i in keep]

    def __len__(self) -> int:
        return len(self.convs)

    def order(self, epoch: int, seed: int, shuffle: bool) -> list[int]:
        if not shuffle:
            return list(range(len(self)))
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        return torch.randperm(len(self), generator=generator).tolist()


class VisionLanguageModeling:
    """`method: sft` for a VLM; `processor` is what the run saves beside the adapter."""

    def __init__(self, recipe: Recipe, data: Any, tokenizer: Any, model: torch.nn.Module) -> None:
        t = recipe.train
        self.processor = load_processor(recipe.model, recipe.model_options.trust_remote_code)
        self.max_len, self.batch_size, self.accum, self.seed, self.shuffle = (
            t.max_seq_len, t.batch_size, t.grad_accum, t.seed, t.shuffle)
        self.image_token_id = getattr(unwrap_to_transformers(model).config, "image_token_id", None)
        self.train = ImageChats(self.processor, data.train_examples, recipe.data.train_on, t.max_seq_len)
        self.eval = ImageChats(self.processor, data.eval_examples, recipe.data.train_on, t.max_seq_len)
        if t.packing:
            console.print("note: train.packing is off for image chats: each row is one conversation, padded "
                          "(packing across images is not exact for every family)")
        if self.train.dropped or self.eval.dropped:
            console.print(f"note: dropped {self.train.dropped + self.eval.dropped} image chats with no answer token "
                          f"within train.max_seq_len={t.max_seq_len}")
        self.per_epoch = math.ceil(len(self.train) / self.batch_size)
        micro = math.ceil(self.per_epoch * t.epochs)
        self._steps = t.max_steps if t.max_steps is not None else micro // self.accum

    @property
    def steps(self) -> int:
        return self._steps

    def _rows(self, micro: int) -> list[int]:
        epoch, position = divmod(micro, self.per_epoch)
        order = self.train.order(epoch, self.seed, self.shuffle)
        return order[position * self.batch_size:(position + 1) * self.batch_size]

    def _batch(self, chats: ImageChats, rows: list[int]) -> Batch:
        encoded: list[Encoded] = [chats.encoded[i] for i in rows]
        return collate(self.processor, [chats.convs[i] for i in rows], encoded, self.max_len, self.image_token_id)

    def step_batches(self, step: int, model: torch.nn.Module) -> list[Batch]:
        return [self._batch(self.train, self._rows(step * self.accum + j)) for j in range(self.accum)]

    def units(self, batch: Batch) -> int:
        return count_trained_tokens(batch["labels"])

    def real_tokens(self, step: int) -> int:
        rows = [i for j in range(self.accum) for i in self._rows(step * self.accum + j)]
        return sum(min(self.train.encoded[i].length, self.max_len) for i in rows)

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return trained_nll_sum(model, inputs, batch["labels"]), {}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, accelerator: Accelerator) -> dict[str, float]:
        """Mean NLL per trained token over the held-out image chats."""
        if not len(self.eval):
            return {}
        was_training = model.training
        model.eval()
        nll = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        count = torch.zeros((), dtype=torch.float64, device=accelerator.device)
        for start in range(0, len(self.eval), self.batch_size):
            batch = self._batch(self.eval, list(range(start, min(start + self.batch_size, len(self.eval)))))
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            nll += self.loss_sum(model, batch)[0].double()
            count += self.units(batch)
        nll, count = accelerator.reduce(nll, "sum"), accelerator.reduce(count, "sum")
        model.train(was_training)
        loss = float(nll / count.clamp(min=1))
        return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}
