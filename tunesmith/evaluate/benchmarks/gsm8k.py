"""GSM8K (Cobbe et al., 2021): grade-school word problems, solved by greedy generation.

Data, as published: JSON Lines with `question, answer`, the answer ending in `#### <number>` (hub:
`openai/gsm8k`, config `main`, split `test`), found in --data-dir as `gsm8k*.jsonl`. Prompt: k solved
problems ("Question: ...\nAnswer: <worked solution>") then the question; generation stops where the next
example would begin. `exact_match` compares the last number of the output with the reference's `#### N` (the
harness's "flexible extract"); `strict_match` needs the model to write `#### N` itself. Shots are the first
k + 1 problems less the item (the harness's first_n rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunesmith.errors import DataError
from tunesmith.evaluate.benchmarks.base import Benchmark, Outcome, RunSettings
from tunesmith.evaluate.benchmarks.multiple_choice import first_n_shots, summarize
from tunesmith.evaluate.benchmarks.sources import json_rows
from tunesmith.evaluate.generate import generate
from tunesmith.evaluate.loglik import encode_text, special_prefix
from tunesmith.evaluate.textmetrics import final_answer, last_number

STOP = ("Question:", "\n\n")
EXAMPLES_KEPT = 3


@dataclass(frozen=True)
class Problem:
    """A word problem; `answer` is the worked reference solution ending in `#### <number>`."""

    question: str
    answer: str


def load(source: str) -> list[Problem]:
    problems = []
    for row, where in json_rows("gsm8k", source, ("main", "test")):
        if not isinstance(row.get("question"), str) or "####" not in str(row.get("answer", "")):
            raise DataError(f"{where}: a GSM8K row needs a question and an answer ending in '#### <number>'")
        problems.append(Problem(row["question"], row["answer"]))
    return problems


def prompt(problems: list[Problem], i: int, shots: int) -> str:
    examples = [f"Question: {problems[j].question}\nAnswer: {problems[j].answer}"
                for j in first_n_shots(len(problems), i, shots)]
    return "".join(e + "\n\n" for e in examples) + f"Question: {problems[i].question}\nAnswer:"


def run(model: Any, tokenizer: Any, problems: list[Problem], settings: RunSettings) -> Outcome:
    chosen = list(range(min(settings.limit or len(problems), len(problems))))
    prefix = special_prefix(tokenizer)
    prompts = [prefix + encode_text(tokenizer, prompt(problems, i, settings.shots)) for i in chosen]
    outputs = generate(model, tokenizer, prompts, max_new_tokens=settings.max_new_tokens, stop=STOP,
                       batch_size=settings.batch_size)
    records = []
    for i, out in zip(chosen, outputs):
        reference = final_answer(problems[i].answer)
        records.append({"id": str(i), "question": problems[i].question, "prediction": out.strip(),
                        "reference": reference, "correct": {"exact_match": last_number(out) == reference,
                                                            "strict_match": final_answer(out) == reference}})
    result = summarize(records, ["exact_match", "strict_match"])
    result["shots"] = settings.shots
    result["examples"] = [{k: r[k] for k in ("question", "prediction", "reference")} for r in records[:EXAMPLES_KEPT]]
    return Outcome(result, records)


BENCHMARK = Benchmark(
    name="gsm8k", summary="grade-school math word problems (greedy generation, final number)",
    data_glob="gsm8k*.jsonl", load=load, run=run, shots=5, primary="exact_match",
)
