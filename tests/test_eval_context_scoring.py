"""Scoring once per context (shared few-shot prefix in a KV cache, head at the scored positions only) gives the
per-pair scorer's log-likelihoods and the same chosen answer on every item: tiny models of several families
(rotary and absolute positions, sliding-window layers), PEFT prompt tuning (falls back), and the real
stories260k model on MMLU and HellaSwag items."""

from __future__ import annotations

import pytest
import torch

from tunesmith.evaluate.benchmarks import hellaswag, locate, mmlu
from tunesmith.evaluate.benchmarks import multiple_choice as context_scoring
from tunesmith.evaluate.benchmarks.multiple_choice import ChoiceRequest, score_choices, with_shots
from tunesmith.evaluate.loglik import loglikelihoods
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.testing.tiny import tiny_model, tiny_tokenizer

SHARED = ("The following are short stories with their endings. Once upon a time there was a little dog who "
          "liked to run in the big green park every morning.\n\n")
QUESTIONS = ["The cat sat on the", "Lily wanted to play with her", "Tom saw a bird. It was",
             "They went home and", "The sun was hot so the children", "A"]
ENDINGS = ("mat.", "ball and her friends all day long.", "red", "went to sleep under the warm blanket.")


def _requests() -> list[ChoiceRequest]:
    shared = [ChoiceRequest(SHARED + q, tuple(" " + e for e in ENDINGS), "stories") for q in QUESTIONS]
    letters = [ChoiceRequest(SHARED + q + "\nAnswer:", (" A", " B", " C"), "letters") for q in QUESTIONS[:3]]
    alone = [ChoiceRequest(q, tuple(" " + e for e in ENDINGS)) for q in QUESTIONS[:4]]
    return shared + letters + alone


def _per_pair(model, tokenizer, requests) -> list[list[float]]:
    flat = iter(r.logprob for r in loglikelihoods(model, tokenizer, [(r.context, c) for r in requests
                                                                     for c in r.continuations], batch_size=4))
    return [[next(flat) for _ in r.continuations] for r in requests]


def _argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def _assert_same(fast: list[list[float]], slow: list[list[float]], tolerance: float = 1e-4) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        assert len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) < tolerance, (a, b)
        assert _argmax(a) == _argmax(b)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "qwen2"])
def test_one_pass_per_context_equals_per_pair_scoring(family, monkeypatch):
    tokenizer = tiny_tokenizer()
    model = tiny_model(family, vocab_size=len(tokenizer)).eval()
    prefixes = []
    original = context_scoring._run_prefix
    monkeypatch.setattr(context_scoring, "_run_prefix", lambda m, p: prefixes.append(len(p)) or original(m, p))
    requests = _requests()
    fast = score_choices(model, tokenizer, requests, batch_size=3)
    assert len(prefixes) == 2 and min(prefixes) >= context_scoring.MIN_SHARED_PREFIX  # both groups cached once
    _assert_same(fast, _per_pair(model, tokenizer, requests))
    _assert_same(score_choices(model, tokenizer, requests, batch_size=5, share_prefix=False), fast)


def test_prompt_tuning_falls_back_to_per_pair_scoring():
    from peft import PromptTuningConfig, get_peft_model

    tokenizer = tiny_tokenizer()
    model = get_peft_model(tiny_model("llama", vocab_size=len(tokenizer)),
                           PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()
    assert not context_scoring.supports_kv_cache(model)
    requests = _requests()[:3]
    _assert_same(score_choices(model, tokenizer, requests), _per_pair(model, tokenizer, requests))


def _benchmark_requests(shared_data, mmlu_items: int | None, hellaswag_items: int | None) -> list[ChoiceRequest]:
    requests = []
    for subject, items in sorted(mmlu.load(locate("mmlu", None, shared_data)).items()):
        requests += [ChoiceRequest(*_flip(subject, mmlu.prompt(items, i, 1))) for i in range(len(items[:mmlu_items]))]
    items = hellaswag.load(locate("hellaswag", None, shared_data))[:hellaswag_items]
    for shots in (0, 1):
        for i, item in enumerate(items):
            context, group = with_shots(items, i, shots)
            requests.append(ChoiceRequest(context, tuple(" " + c for c in item.choices), group or None))
    return requests


def test_same_choice_as_per_pair_on_real_items(stories260k, shared_data):
    model, tokenizer = load_model(str(stories260k), dtype="fp32"), load_tokenizer(str(stories260k))
    requests = _benchmark_requests(shared_data, 4, 6)
    _assert_same(score_choices(model, tokenizer, requests, batch_size=8), _per_pair(model, tokenizer, requests))


@pytest.mark.slow
def test_same_choice_as_per_pair_on_every_benchmark_item(stories260k, shared_data):
    """All 537 MMLU questions (1-shot) and all 500 HellaSwag items (0- and 1-shot) on stories260k."""
    model, tokenizer = load_model(str(stories260k), dtype="fp32"), load_tokenizer(str(stories260k))
    requests = _benchmark_requests(shared_data, None, None)
    assert len(requests) == 537 + 1000
    _assert_same(score_choices(model, tokenizer, requests, batch_size=16), _per_pair(model, tokenizer, requests))


def _flip(subject: str, prompt_and_group: tuple[str, str]) -> tuple[str, tuple[str, ...], str]:
    prompt, group = prompt_and_group
    return prompt, (" A", " B", " C", " D"), f"{subject}|{group}"


def test_context_longer_than_the_window_keeps_the_per_pair_rule():
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tokenizer), max_positions=32).eval()
    requests = [ChoiceRequest("Once upon a time " * 12, (" there was", " a dog")), ChoiceRequest("Hi", (" you",))]
    _assert_same(score_choices(model, tokenizer, requests), _per_pair(model, tokenizer, requests))
    assert torch.is_inference_mode_enabled() is False
