"""MMLU (Hendrycks et al., 2021): four-choice questions in 57 subjects, scored by the answer letter's likelihood.

Data, as published: CSVs without a header, `question,A,B,C,D,answer-letter`, one file per subject named
`<subject>_test.csv`; a folder of them (or its `test/` subfolder) is the benchmark, found in --data-dir as
`mmlu/`. Hub: `cais/mmlu` (config `all`, split `test`: question, subject, choices, answer index).
Prompt: lm-evaluation-harness's, "The following are multiple choice questions (with answers) about
<subject>.\n\n", k solved examples of the same subject, the question with its lettered options and
"Answer:"; the choices are " A" ... " D". Accuracy is micro-averaged over all questions; `limit` applies per
subject.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from tunesmith.errors import DataError, UserError
from tunesmith.evaluate.benchmarks.base import Benchmark, Outcome, RunSettings
from tunesmith.evaluate.benchmarks.multiple_choice import MultipleChoice, Prompted, score_items, summarize, with_shots
from tunesmith.evaluate.benchmarks.sources import hub_rows

LETTERS = ("A", "B", "C", "D")


def load(source: str) -> dict[str, list[MultipleChoice]]:
    """Subject -> questions, from a CSV file, a folder of `<subject>_test.csv` files, or a hub id."""
    path = Path(source).expanduser()
    if not path.exists():
        subjects: dict[str, list[MultipleChoice]] = {}
        for row in hub_rows("mmlu", source, ("all", "test")):
            item = MultipleChoice(query(row["question"], row["choices"]), LETTERS, int(row["answer"]), row["subject"])
            subjects.setdefault(row["subject"], []).append(item)
        return subjects
    files = [path] if path.is_file() else sorted(path.glob("*_test.csv")) or sorted(path.glob("test/*_test.csv"))
    if not files:
        raise UserError(f"MMLU: no <subject>_test.csv files in {path} (nor in {path / 'test'})")
    return {_subject(file): _read_csv(file) for file in files}


def _subject(file: Path) -> str:
    return file.stem.removesuffix("_test")


def _read_csv(file: Path) -> list[MultipleChoice]:
    items = []
    with file.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise DataError(f"{file}:{number}: an MMLU row is question,A,B,C,D,answer-letter (no header)")
            gold = LETTERS.index(row[5].strip())
            items.append(MultipleChoice(query(row[0], row[1:5]), LETTERS, gold, _subject(file)))
    return items


def query(question: str, choices: list[str]) -> str:
    """lm-evaluation-harness's MMLU question text; the answer letter follows after a space."""
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
    return f"{question.strip()}{options}\nAnswer:"


def prompt(items: list[MultipleChoice], i: int, shots: int) -> tuple[str, str]:
    """(prompt of question i with k examples of its subject, the examples' group key)."""
    header = f"The following are multiple choice questions (with answers) about {items[i].subject.replace('_', ' ')}.\n\n"
    return with_shots(items, i, shots, header)


def run(model: Any, tokenizer: Any, subjects: dict[str, list[MultipleChoice]], settings: RunSettings) -> Outcome:
    """Accuracy over all questions (micro-average) and per subject, each with its interval."""
    prompted = []
    for subject, items in sorted(subjects.items()):
        for i in range(min(settings.limit or len(items), len(items))):
            context, group = prompt(items, i, settings.shots)
            prompted.append(Prompted(f"{subject}/{i}", items[i], context, group))
    records = score_items(model, tokenizer, prompted, settings.batch_size, "mmlu")
    result = summarize(records, ["acc"])
    result["shots"] = settings.shots
    result["subjects"] = {s: summarize([r for r in records if r["subject"] == s], ["acc"]) for s in sorted(subjects)}
    return Outcome(result, records)


BENCHMARK = Benchmark(
    name="mmlu", summary="57-subject multiple choice (log-likelihood of the answer letter)", data_glob="mmlu",
    load=load, run=run, shots=5, primary="acc",
)
