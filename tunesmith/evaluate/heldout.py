"""The task itself: loss, perplexity and answer quality on held-out examples; and perplexity on raw text.

The held-out set of a run is its own eval split, re-created exactly by `prepare_data` from the recipe in
run.json (same files, same seeded split), or any file in a chat format. Loss is the mean NLL per trained
token (the assistant turns, as in training). Answers are generated greedily under the run's chat template,
stopping at its end-of-turn, and compared with the reference answer by exact match, SQuAD-style normalized
match and ROUGE-L F1.

`text_perplexity` measures general language modelling on a raw text file (e.g. TinyStories), a row per
non-empty line, joined with EOS and cut into blocks as continued pre-training does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.data.formats import parse_rows
from tunesmith.data.loading import load_rows
from tunesmith.data.pipeline import prepare_data, to_samples
from tunesmith.data.tokenize import tokenize_prompt, tokenize_text
from tunesmith.data.types import IGNORE_INDEX, Conversation, Example, Message, Preference, Sample, Text, Unpaired
from tunesmith.errors import UserError
from tunesmith.evaluate.generate import generate
from tunesmith.evaluate.loglik import max_context
from tunesmith.evaluate.textmetrics import exact_match, normalized_match, rouge_l_f1
from tunesmith.methods.shared.token_nll import token_nll_sum
from tunesmith.runs.targets import Target

DEFAULT_MAX_LEN = 1024


@dataclass
class HeldoutSet:
    """Held-out examples and how to tokenize them (the run's sequence length and trained turns)."""

    examples: list[Example]
    source: str
    max_len: int = DEFAULT_MAX_LEN
    train_on: str = "all"


def heldout_from_run(target: Target, tokenizer: Any) -> HeldoutSet:
    """The run's eval split, re-created from its recipe (data paths as written, relative to the working dir)."""
    recipe = target.recipe()
    try:
        data = prepare_data(recipe, tokenizer)
    except UserError as e:
        raise UserError(f"re-creating the held-out split of run '{target.name}' failed: {e}. Run eval from the "
                        "folder the run was trained in, or pass --heldout FILE") from None
    if not data.eval_examples:
        raise UserError(f"run '{target.name}' has no held-out split (data.eval is 0); pass --heldout FILE")
    return HeldoutSet(data.eval_examples, f"{target.name}: data.eval", recipe.train.max_seq_len, recipe.data.train_on)


def heldout_from_file(file: str) -> HeldoutSet:
    return HeldoutSet(parse_rows(load_rows(file)).examples, file)


def heldout_metrics(
    model: Any, tokenizer: Any, heldout: HeldoutSet, *, end_of_turn: str, limit: int | None, batch_size: int,
    max_new_tokens: int,
) -> dict[str, Any]:
    """Loss and perplexity on the (first `limit`) held-out examples, plus answer quality where they have answers."""
    examples = heldout.examples[:limit] if limit else heldout.examples
    samples = to_samples(examples, tokenizer, min(heldout.max_len, max_context(model)), heldout.train_on)
    loss, tokens = mean_nll(model, samples, tokenizer.pad_token_id, batch_size)
    result: dict[str, Any] = {"loss": loss, "ppl": _ppl(loss), "tokens": tokens, "source": heldout.source}
    pairs = [pair for pair in map(prompt_and_answer, examples) if pair is not None]
    if not pairs:
        return result
    prompts = [tokenize_prompt(tokenizer, prompt) for prompt, _ in pairs]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=[end_of_turn],
                       batch_size=batch_size)
    answers = [out.strip() for out in outputs]
    references = [reference for _, reference in pairs]
    n = len(pairs)
    result.update(
        n=n,
        exact_match=sum(map(exact_match, answers, references)) / n,
        normalized_match=sum(map(normalized_match, answers, references)) / n,
        rouge_l=sum(map(rouge_l_f1, answers, references)) / n,
        examples=[{"prompt": p[-1].content, "reference": r, "prediction": a}
                  for (p, r), a in list(zip(pairs, answers))[:3]],
    )
    return result


def prompt_and_answer(example: Example) -> tuple[tuple[Message, ...], str] | None:
    """(messages before the last answer, that answer) for examples that have one; None for raw text."""
    if isinstance(example, Conversation):
        last = max(i for i, m in enumerate(example.messages) if m.role == "assistant")
        return example.messages[:last], example.messages[last].content
    if isinstance(example, Preference):
        return example.prompt, example.chosen[-1].content
    if isinstance(example, Unpaired) and example.desirable:
        return example.prompt, example.completion[-1].content
    return None


def text_perplexity(model: Any, tokenizer: Any, file: str, *, limit: int | None, batch_size: int) -> dict[str, Any]:
    """Perplexity on a raw text file: the first `limit` non-empty lines, as continued pre-training sees them."""
    if not Path(file).is_file():
        raise UserError(f"--ppl-file: file not found: {file}")
    rows = load_rows(file)
    examples = parse_rows(rows[:limit] if limit else rows, "text").examples
    texts = [ex.text for ex in examples if isinstance(ex, Text)]
    samples = tokenize_text(tokenizer, texts, min(DEFAULT_MAX_LEN, max_context(model)))
    loss, tokens = mean_nll(model, samples, tokenizer.pad_token_id, batch_size)
    return {"loss": loss, "ppl": _ppl(loss), "tokens": tokens, "documents": len(texts), "source": file}


@torch.inference_mode()
def mean_nll(model: Any, samples: list[Sample], pad_id: int | None, batch_size: int) -> tuple[float, int]:
    """Mean NLL per trained token over `samples` (not a mean of batch means), and the token count."""
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id if pad_id is not None else 0, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for b, sample in enumerate(chunk):
            ids[b, : len(sample)] = torch.tensor(sample.input_ids)
            labels[b, : len(sample)] = torch.tensor(sample.labels)
            mask[b, : len(sample)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        batch_nll, batch_count = token_nll_sum(logits, labels.to(device))
        nll += float(batch_nll)
        count += int(batch_count)
    if count == 0:
        raise UserError("no trained tokens to score: the held-out examples are empty after tokenization")
    return nll / count, count


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0))
