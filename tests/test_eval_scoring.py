"""Log-likelihood scoring, benchmark accuracy and generation, checked against naive independent computations
on the real stories260k model (fp32): one forward pass per choice with `model(ids).logits`."""

from __future__ import annotations

import torch

from tunesmith.data.templates import end_of_turn
from tunesmith.evaluate.benchmarks import RunSettings, gsm8k, hellaswag, locate, mmlu
from tunesmith.evaluate.benchmarks.gsm8k import Problem
from tunesmith.evaluate.benchmarks.multiple_choice import MultipleChoice, first_n_shots, with_shots
from tunesmith.evaluate.generate import _StopOnText, cut_at_stop, generate
from tunesmith.evaluate.loglik import encode_pair, loglikelihoods
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.testing.tiny import tiny_tokenizer


def _stories(path):
    return load_model(str(path), dtype="fp32"), load_tokenizer(str(path))


def naive_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """Reference: tokenize context and context+continuation (the tokenizer adds BOS), take the tail, one pass."""
    ctx = tokenizer(context).input_ids
    cont = tokenizer(context + continuation).input_ids[len(ctx):]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[len(ctx) - 1 + j, token]) for j, token in enumerate(cont))


def test_loglikelihoods_match_naive_per_pair_loop(stories260k):
    model, tokenizer = _stories(stories260k)
    pairs = [
        ("Once upon a time", " there was a girl"),
        ("Answer:", " B"),
        ("Lily went to the park. She saw a big dog and", " ran to her mom."),
        ("The", " cat"),
        ("Tom had a red ball.", " He liked it very much."),
    ]
    batched = loglikelihoods(model, tokenizer, pairs, batch_size=2)  # padding and sorting exercised
    for (context, continuation), result in zip(pairs, batched):
        assert abs(result.logprob - naive_logprob(model, tokenizer, context, continuation)) < 1e-4
    greedy = generate(model, tokenizer, [tokenizer("Once upon a time").input_ids], max_new_tokens=3)[0]
    assert loglikelihoods(model, tokenizer, [("Once upon a time", greedy)])[0].greedy


def test_encode_pair_moves_trailing_space_to_the_continuation(stories260k):
    tokenizer = load_tokenizer(str(stories260k))
    assert encode_pair(tokenizer, "Answer: ", "B") == encode_pair(tokenizer, "Answer:", " B")
    ctx, cont = encode_pair(tokenizer, "Answer:", " B")
    assert ctx[0] == tokenizer.bos_token_id and tokenizer.decode(cont).strip() == "B"


def _naive_accuracy(model, tokenizer, items, prompts, per_char=False):
    correct = 0
    for item, prompt in zip(items, prompts):
        scores = [naive_logprob(model, tokenizer, prompt, " " + c) / (len(c) if per_char else 1) for c in item.choices]
        correct += max(range(len(scores)), key=scores.__getitem__) == item.gold
    return correct / len(items)


def test_mmlu_and_hellaswag_match_naive_reference(stories260k, shared_data):
    model, tokenizer = _stories(stories260k)
    subjects = mmlu.load(locate("mmlu", None, shared_data))
    assert set(subjects) == {"abstract_algebra", "anatomy", "college_computer_science", "high_school_geography"}
    anatomy = {"anatomy": subjects["anatomy"]}
    result = mmlu.run(model, tokenizer, anatomy, RunSettings(limit=4, shots=1, batch_size=3)).result
    items = subjects["anatomy"][:4]
    prompts = [mmlu.prompt(subjects["anatomy"], i, 1)[0] for i in range(4)]
    assert result["n"] == 4 and result["subjects"]["anatomy"]["n"] == 4
    assert result["acc"] == _naive_accuracy(model, tokenizer, items, prompts)

    hella = hellaswag.load(locate("hellaswag", None, shared_data))
    result = hellaswag.run(model, tokenizer, hella, RunSettings(limit=4, shots=0, batch_size=5)).result
    prompts = [with_shots(hella, i, 0)[0] for i in range(4)]
    assert result["acc"] == _naive_accuracy(model, tokenizer, hella[:4], prompts)
    assert result["acc_norm"] == _naive_accuracy(model, tokenizer, hella[:4], prompts, per_char=True)


def test_benchmark_files_are_read_in_their_original_format(shared_data):
    subjects = mmlu.load(str(shared_data / "mmlu"))
    assert sum(map(len, subjects.values())) == 537
    first = subjects["abstract_algebra"][0]
    assert first.query.startswith("Find the degree") and first.query.endswith("\nD. 6\nAnswer:")
    assert first.choices == ("A", "B", "C", "D") and first.gold == 1  # the CSV's answer letter is B
    hella = hellaswag.load(str(shared_data / "hellaswag_val_500.jsonl"))
    assert len(hella) == 500 and all(len(item.choices) == 4 for item in hella)
    assert not any("[" in item.query for item in hella)  # WikiHow's [header]/[title] artefacts are gone
    problems = gsm8k.load(str(shared_data / "gsm8k_test.jsonl"))
    assert len(problems) == 1319 and problems[0].answer.endswith("#### 18")


def test_hellaswag_preprocessing_follows_the_harness():
    assert hellaswag.text(" How to cook [title] Boil water. ") == "How to cook. Boil water."
    assert hellaswag.text("a [header] b") == "a b"


def test_fewshot_examples_follow_the_harness_first_n_rule_and_exclude_the_item():
    assert first_n_shots(10, 3, 5) == [0, 1, 2, 4, 5]  # the first k + 1, less the item
    assert first_n_shots(10, 7, 5) == [0, 1, 2, 3, 4]  # past them: the same k for every item
    assert first_n_shots(3, 0, 5) == [1, 2]  # fewer items than shots: all the others
    items = [MultipleChoice(f"Q{i}\nAnswer:", ("A", "B"), i % 2, "x_y") for i in range(4)]
    prompt, group = mmlu.prompt(items, 0, 2)
    assert prompt.startswith("The following are multiple choice questions (with answers) about x y.\n\n")
    assert prompt.endswith("\n\nQ0\nAnswer:") and prompt.count("Answer:") == 3 and group == "1,2"
    assert prompt == mmlu.prompt(items, 0, 2)[0] and mmlu.prompt(items, 3, 2)[1] == "0,1"
    problems = [Problem(f"q{i}", f"so #### {i}") for i in range(3)]
    assert gsm8k.prompt(problems, 1, 0) == "Question: q1\nAnswer:"
    assert gsm8k.prompt(problems, 1, 2).count("#### ") == 2 and "#### 1" not in gsm8k.prompt(problems, 1, 2)


def test_gsm8k_runs_generation_and_scores_the_last_number(stories260k):
    model, tokenizer = _stories(stories260k)
    problems = [Problem("Tom has 3 apples and buys 5 more. How many?", "3 + 5 = 8\n#### 8")] * 3
    result = gsm8k.run(model, tokenizer, problems, RunSettings(limit=2, shots=1, batch_size=2, max_new_tokens=12)).result
    assert result["n"] == 2 and 0.0 <= result["exact_match"] <= 1.0
    assert result["examples"][0]["reference"] == "8" and "Question:" not in result["examples"][0]["prediction"]


def test_batched_generation_equals_one_at_a_time(stories260k):
    model, tokenizer = _stories(stories260k)
    prompts = [tokenizer(t).input_ids for t in ("Once upon a time", "Lily went to the park. She", "The dog")]
    batched = generate(model, tokenizer, prompts, max_new_tokens=20, stop=["."], batch_size=3)
    alone = [generate(model, tokenizer, [p], max_new_tokens=20, stop=["."])[0] for p in prompts]
    assert batched == alone
    assert all("." not in text for text in batched) and any(text for text in batched)


def test_stop_on_a_multi_token_text_marker():
    tokenizer = tiny_tokenizer()
    marker = end_of_turn(tokenizer, "chatml")
    ids = tokenizer("Paris is big<|im_end|>\n", add_special_tokens=False).input_ids
    assert len(tokenizer(marker, add_special_tokens=False).input_ids) > 1  # plain text here, several tokens
    other = tokenizer("Paris is big and old, very old indeed", add_special_tokens=False).input_ids[: len(ids)]
    stop = _StopOnText(tokenizer, [marker], prompt_len=0)
    assert stop(torch.tensor([ids, other]), None).tolist() == [True, False]
    assert cut_at_stop(tokenizer.decode(ids), [marker, "</s>"]) == "Paris is big"
