"""The held-out suite of a vision-language model: loss on the held-out image chats, and greedy answers to
their questions scored by exact match and `contains`, item by item.

Loss is the mean NLL per trained token (assistant tokens, never image tokens or padding), on batches made by
the model's processor exactly as training made them (vision/collate.py); a preference pair (a DPO run's
held-out split) counts as its prompt + chosen answer, as a text model's pairs do. Answers are the model's
greedy continuation of each chat up to its last answer (vision/generate.py). Every item is a record in
eval_samples.jsonl (`correct` per metric), so base and tuned are paired item by item and their change gets
the same Tango interval and McNemar test as the text benchmarks (evaluate/forgetting.py); each score carries
its Wilson interval as the benchmarks' do. The first few items keep a small thumbnail of their picture (a
PNG data: URI) for the report, beside the question, the reference and the answer.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import torch

from tunesmith.data.images import count_placeholders, open_image
from tunesmith.data.types import Conversation, Preference
from tunesmith.errors import UserError
from tunesmith.evaluate.benchmarks.base import Outcome
from tunesmith.evaluate.benchmarks.multiple_choice import summarize
from tunesmith.evaluate.heldout import HeldoutSet, prompt_and_answer
from tunesmith.evaluate.textmetrics import exact_match, normalize_answer
from tunesmith.methods.shared.token_nll import token_nll_sum
from tunesmith.train.unwrap import unwrap_to_transformers
from tunesmith.vision.collate import collate
from tunesmith.vision.generate import greedy_answers
from tunesmith.vision.objective import ImageChats

METRICS = ("exact_match", "contains")
EXAMPLES = 4
"""Items whose picture, question and answers the report shows."""
THUMBNAIL = 96
"""The longest side, in pixels, of a picture kept for the report."""


def contains(prediction: str, reference: str) -> bool:
    """The reference appears in the answer, both normalised (case, punctuation, articles): "It is a red
    circle." contains "a red circle"."""
    wanted = normalize_answer(reference)
    return bool(wanted) and f" {wanted} " in f" {normalize_answer(prediction)} "


def vision_heldout(model: Any, processor: Any, heldout: HeldoutSet, *, limit: int | None, batch_size: int,
                   max_new_tokens: int) -> Outcome:
    """Loss, exact match and contains (with intervals) on the first `limit` held-out image chats, and a
    record per item."""
    examples = heldout.examples[:limit] if limit else heldout.examples
    convs, train_on = image_chats(examples, heldout.train_on)
    if not convs:
        raise UserError(f"the held-out set {heldout.source} holds no chats or preference pairs for a "
                        "vision-language model")
    loss, tokens = _mean_nll(model, processor, convs, heldout, batch_size, train_on)
    result: dict[str, Any] = {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": tokens,
                              "source": heldout.source}
    pairs = [(conv, pair) for conv in convs if (pair := prompt_and_answer(conv)) is not None]
    prompts = [Conversation(messages, conv.images[:count_placeholders([m.content for m in messages])])
               for conv, (messages, _) in pairs]
    answers = greedy_answers(model, processor, prompts, max_new_tokens, batch_size)
    records = []
    for index, (prompt, (_, (_, reference)), answer) in enumerate(zip(prompts, pairs, answers)):
        record = {"id": index, "question": prompt.messages[-1].content, "reference": reference,
                  "prediction": answer,
                  "correct": {"exact_match": exact_match(answer, reference), "contains": contains(answer, reference)}}
        records.append(record)
    result.update(summarize(records, METRICS))  # the benchmarks' accuracies and Wilson intervals
    result["examples"] = [{"image": thumbnail(prompt.images[0]) if prompt.images else None,
                           "question": r["question"], "reference": r["reference"], "prediction": r["prediction"]}
                          for prompt, r in list(zip(prompts, records))[:EXAMPLES]]
    return Outcome(result, records)


def image_chats(examples: list[Any], train_on: str) -> tuple[list[Conversation], str]:
    """The held-out examples as image chats, and which turns carry loss. A preference pair counts as its prompt
    + chosen answer with its pictures, loss on that answer alone: a text model's held-out pairs are scored the
    same way (data.pipeline.to_samples, heldout.prompt_and_answer), so a DPO run is judged on its preferred
    answers, base and tuned alike."""
    chats = [Conversation(ex.prompt + ex.chosen, ex.images) if isinstance(ex, Preference) else ex
             for ex in examples if isinstance(ex, (Conversation, Preference))]
    return chats, "last" if any(isinstance(ex, Preference) for ex in examples) else train_on


@torch.inference_mode()
def _mean_nll(model: Any, processor: Any, convs: list[Conversation], heldout: HeldoutSet,
              batch_size: int, train_on: str) -> tuple[float, int]:
    chats = ImageChats(processor, convs, train_on, heldout.max_len)
    image_token_id = getattr(unwrap_to_transformers(model).config, "image_token_id", None)
    first = next(model.parameters())
    nll, count = 0.0, 0
    for start in range(0, len(chats), batch_size):
        rows = range(start, min(start + batch_size, len(chats)))
        batch = collate(processor, [chats.convs[i] for i in rows], [chats.encoded[i] for i in rows],
                        heldout.max_len, image_token_id)
        labels = batch.pop("labels")
        inputs = {k: v.to(first.device, first.dtype) if v.is_floating_point() else v.to(first.device)
                  for k, v in batch.items()}  # pixel inputs in the weights' dtype
        logits = model(**inputs, use_cache=False).logits
        batch_nll, batch_count = token_nll_sum(logits, labels.to(first.device))
        nll, count = nll + float(batch_nll), count + int(batch_count)
    if count == 0:
        raise UserError("no trained tokens to score: the held-out image chats are empty after tokenization")
    return nll / count, count


def thumbnail(ref: str) -> str | None:
    """A picture as a small PNG data: URI for the report; None when it cannot be read any more."""
    try:
        image = open_image(ref)
    except Exception:  # noqa: BLE001 -- a picture gone since the eval read it only loses its thumbnail
        return None
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
