"""Preference, KTO and reward pairs keep their answers when cut to max_seq_len: the prompt gives way first
(from its start, to data.max_prompt_len), then the answer (from its end); a pair left with an answer that
scores no token is dropped and counted, never trained one-sided."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tunesmith.data.pairs import drop_unusable, fit, tokenize_pairs
from tunesmith.data.pipeline import prepare_data
from tunesmith.data.report import build_report, print_report
from tunesmith.data.types import IGNORE_INDEX, Message, Preference, Sample, Unpaired
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.tiny import save_tiny

IDS = list(range(100, 130))  # 20 prompt tokens, 8 answer tokens, then 2 after the answer
LABELS = [IGNORE_INDEX] * 20 + IDS[20:28] + [IGNORE_INDEX] * 2


def test_a_prompt_limit_cuts_the_prompt_first_then_the_answer() -> None:
    capped = fit(Sample(IDS, LABELS), 64, max_prompt_len=5)
    assert capped.input_ids == IDS[15:28] and capped.truncated, "the prompt keeps its last 5 tokens"
    both = fit(Sample(IDS, LABELS), 10, max_prompt_len=5)
    assert both.input_ids == IDS[15:25], "then the answer loses its end"
    assert both.trained_tokens == 5
    nothing_left = fit(Sample(IDS, LABELS), 10, max_prompt_len=10)
    assert nothing_left.trained_tokens == 0, "a prompt limit as long as max_seq_len leaves the answer no room"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return load_tokenizer(str(save_tiny("llama", tmp_path_factory.mktemp("pairs") / "base", vocab_size=300)))


def _pair(prompt_words: int, answer: str = "yes it is", rejected: str = "no") -> Preference:
    prompt = " ".join(["word"] * prompt_words)
    return Preference((Message("user", prompt),), (Message("assistant", answer),), (Message("assistant", rejected),))


def test_pairs_with_an_unscorable_side_are_dropped_not_trained(tokenizer) -> None:
    from tunesmith.data.templates import apply_template

    apply_template(tokenizer, "plain")
    short, long_prompt = _pair(3), _pair(200)
    kept, dropped = drop_unusable([short, long_prompt, short], tokenizer, max_len=64, max_prompt_len=64)
    assert (kept, dropped) == ([short, short], 1)
    kept, dropped = drop_unusable([short, long_prompt], tokenizer, max_len=64)
    assert dropped == 0, "without a prompt limit the answer keeps half the room"
    pairs = tokenize_pairs([long_prompt], tokenizer, 64)
    assert pairs[0].chosen.trained_tokens > 0 and pairs[0].rejected.trained_tokens > 0
    with pytest.raises(Exception, match="no token to score"):
        tokenize_pairs([long_prompt], tokenizer, 64, max_prompt_len=64)
    unpaired = Unpaired(long_prompt.prompt, long_prompt.chosen, True)
    assert drop_unusable([unpaired], tokenizer, 64, 64)[1] == 1, "KTO answers are checked the same way"


@pytest.mark.parametrize("method", ["dpo", "kto", "reward"])
def test_the_report_counts_the_dropped_pairs(tokenizer, tmp_path: Path, method: str) -> None:
    rows = [{"prompt": "word " * n, "chosen": "yes it is", "rejected": "no"} for n in (3, 4, 200, 5, 300)]
    file = tmp_path / "pairs.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = recipe_from_dict({
        "name": "p", "model": str(tokenizer.name_or_path), "method": method, "output": str(tmp_path),
        "data": {"train": str(file), "eval": 0.0, "template": "plain", "max_prompt_len": 64, "cache": False},
        "train": {"max_seq_len": 64},
    })
    data = prepare_data(recipe, tokenizer)
    assert data.unusable == 2 and len(data.train_examples) == 3
    report = build_report(data)
    assert report.unusable == 2 and report.no_trained == 0
    console = Console(record=True, width=120)
    print_report(report, None, tokenizer, console)
    assert "unusable pairs dropped" in console.export_text()


def test_hh_pairs_keep_their_answers_at_256_tokens(stories260k: Path, shared_data: Path, tmp_path: Path) -> None:
    """Before this fix, validate showed 210 of 499 HH pairs with no trained token at max_seq_len 256."""
    recipe = recipe_from_dict({
        "name": "hh", "model": str(stories260k), "method": "dpo", "output": str(tmp_path),
        "data": {"train": str(shared_data / "preference_hh_harmless_base_test_500.jsonl"), "eval": 0.0,
                 "template": "plain", "on_bad_row": "skip"},
        "train": {"max_seq_len": 256},
    })
    report = build_report(prepare_data(recipe, load_tokenizer(str(stories260k))))
    assert report.train_examples == 499 and report.no_trained == 0 and report.unusable == 0


@pytest.mark.parametrize("max_prompt_len", [None, 48])
def test_kto_baseline_pairs_always_score_a_token(stories260k: Path, shared_data: Path, tmp_path: Path,
                                                 max_prompt_len: int | None) -> None:
    """KTO's KL baseline puts answer i-1 after prompt i: on the real HH pairs cut to 64 tokens, every such
    mismatched sequence still scores answer tokens, so the baseline is never a silent zero."""
    from tunesmith.data.pairs import as_unpaired, mismatched_answers

    recipe = recipe_from_dict({
        "name": "hh", "model": str(stories260k), "method": "kto", "output": str(tmp_path),
        "data": {"train": str(shared_data / "preference_hh_harmless_base_test_500.jsonl"), "eval": 0.0,
                 "template": "plain", "on_bad_row": "skip", "max_prompt_len": max_prompt_len, "cache": False},
        "train": {"max_seq_len": 64},
    })
    tokenizer = load_tokenizer(str(stories260k))
    rows = as_unpaired(prepare_data(recipe, tokenizer).train_examples)
    shuffled = rows[1::2] + rows[::2]  # desirable and undesirable answers of different prompts side by side
    for start in range(0, len(shuffled), 8):
        batch = shuffled[start:start + 8]
        samples = mismatched_answers(batch, tokenizer, 64, max_prompt_len)
        assert len(samples) == len(batch) and min(s.trained_tokens for s in samples) >= 1
        assert all(len(s) <= 64 for s in samples)
