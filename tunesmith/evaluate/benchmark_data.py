"""Benchmark items from their original files (or a hub dataset), found by path or in a data folder.

Original formats, as published:
  MMLU       hendrycks CSVs without a header, `question,A,B,C,D,answer-letter`, one file per subject named
             `<subject>_test.csv`; a folder of them (or its `test/` subfolder) is the whole benchmark.
             Hub: `cais/mmlu` (config `all`, split `test`: question, subject, choices, answer index).
  HellaSwag  JSON Lines with `activity_label, ctx_a, ctx_b, endings, label` (hub: `Rowan/hellaswag`, validation).
  GSM8K      JSON Lines with `question, answer`, the answer ending in `#### <number>` (hub: `openai/gsm8k`, main).
In a `--data-dir` they are found as `mmlu/` (`mmlu/test/*_test.csv`), `hellaswag*.jsonl` and `gsm8k*.jsonl`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.loading import load_rows
from tunesmith.errors import DataError, UserError

LETTERS = ("A", "B", "C", "D")
_IN_DATA_DIR = {"mmlu": "mmlu", "hellaswag": "hellaswag*.jsonl", "gsm8k": "gsm8k*.jsonl"}
_HUB = {"mmlu": ("all", "test"), "hellaswag": (None, "validation"), "gsm8k": ("main", "test")}
"""Benchmark -> (hub config, split) used when a source is a hub dataset id."""


@dataclass(frozen=True)
class MultipleChoice:
    """A question scored by comparing the log-likelihood of each choice after `query`."""

    query: str
    choices: tuple[str, ...]
    gold: int
    subject: str = ""


@dataclass(frozen=True)
class Problem:
    """A GSM8K word problem; `answer` is the worked reference solution ending in `#### <number>`."""

    question: str
    answer: str


def locate(name: str, source: str | None, data_dir: Path | None) -> str | None:
    """The source of benchmark `name`: the one given, else its file or folder in `data_dir`, else None."""
    if source:
        return source
    if data_dir is None:
        return None
    found = sorted(Path(data_dir).glob(_IN_DATA_DIR[name]))
    return str(found[0]) if found else None


def load_mmlu(source: str) -> dict[str, list[MultipleChoice]]:
    """Subject -> questions, from a CSV file, a folder of `<subject>_test.csv` files, or a hub id."""
    path = Path(source).expanduser()
    if not path.exists():
        rows = _hub_rows("mmlu", source)
        subjects: dict[str, list[MultipleChoice]] = {}
        for row in rows:
            query = _mmlu_query(row["question"], row["choices"])
            item = MultipleChoice(query, LETTERS, int(row["answer"]), row["subject"])
            subjects.setdefault(row["subject"], []).append(item)
        return subjects
    files = [path] if path.is_file() else sorted(path.glob("*_test.csv")) or sorted(path.glob("test/*_test.csv"))
    if not files:
        raise UserError(f"MMLU: no <subject>_test.csv files in {path} (nor in {path / 'test'})")
    return {_subject(file): _mmlu_csv(file) for file in files}


def _subject(file: Path) -> str:
    return file.stem.removesuffix("_test")


def _mmlu_csv(file: Path) -> list[MultipleChoice]:
    items = []
    with file.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise DataError(f"{file}:{number}: an MMLU row is question,A,B,C,D,answer-letter (no header)")
            gold = LETTERS.index(row[5].strip())
            items.append(MultipleChoice(_mmlu_query(row[0], row[1:5]), LETTERS, gold, _subject(file)))
    return items


def _mmlu_query(question: str, choices: list[str]) -> str:
    """lm-evaluation-harness's MMLU prompt; the answer letter follows after a space."""
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
    return f"{question.strip()}{options}\nAnswer:"


def load_hellaswag(source: str) -> list[MultipleChoice]:
    """HellaSwag items, preprocessed exactly as lm-evaluation-harness does (see `hellaswag_text`)."""
    items = []
    for row, where in _json_rows("hellaswag", source):
        try:
            ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
            query = hellaswag_text(row["activity_label"] + ": " + ctx)
            items.append(MultipleChoice(query, tuple(hellaswag_text(e) for e in row["endings"]), int(row["label"])))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{where}: a HellaSwag row needs activity_label, ctx_a, ctx_b, endings, label ({e})") from None
    return items


def hellaswag_text(text: str) -> str:
    """The harness's `preprocess`: drop WikiHow's bracketed artefacts (" [title]" becomes a sentence end)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def load_gsm8k(source: str) -> list[Problem]:
    problems = []
    for row, where in _json_rows("gsm8k", source):
        if not isinstance(row.get("question"), str) or "####" not in str(row.get("answer", "")):
            raise DataError(f"{where}: a GSM8K row needs a question and an answer ending in '#### <number>'")
        problems.append(Problem(row["question"], row["answer"]))
    return problems


def _json_rows(name: str, source: str) -> list[tuple[dict[str, Any], str]]:
    path = Path(source).expanduser()
    if path.exists():
        return [(row.data, row.where) for row in load_rows(str(path))]
    return [(row, f"{source}:row {i}") for i, row in enumerate(_hub_rows(name, source), start=1)]


def _hub_rows(name: str, source: str) -> list[dict[str, Any]]:
    """Rows of a hub dataset; a path that does not exist fails here rather than as a confusing hub error."""
    if source.startswith(("/", "./", "../", "~")) or source.endswith((".csv", ".jsonl", ".json")):
        raise UserError(f"{name}: file not found: {source}")
    import datasets

    config, split = _HUB[name]
    try:
        return list(datasets.load_dataset(source, config, split=split))
    except Exception as e:  # datasets raises many types (connection, missing config, offline); all mean the same
        raise UserError(f"{name}: could not load hub dataset '{source}' ({type(e).__name__}: {e}); "
                        "give the path of a local file instead") from None
