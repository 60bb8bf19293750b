"""MT-Bench (Zheng et al., 2023): 80 two-turn questions in 8 categories, answered by the model, graded by a judge.

Data, as published by FastChat: `question.jsonl` (question_id, category, turns[2]) and
`reference_answer/gpt-4.jsonl` (question_id, choices[0].turns[2]; math, reasoning and coding), found in
--data-dir as `mt_bench/` (the reference file may be named `reference_answer*.jsonl` beside the questions).
The model answers turn 1, then turn 2 after its own first answer, greedily, under its own chat template.
The judge (any OpenAI-compatible endpoint, judge.py) rates each turn 1-10 with FastChat's single-answer
prompts, the reference answer shown where one exists; turn 2 is judged on the whole conversation. With
--base, the judge also compares tuned and base on each turn in both orders (pairwise; disagreeing orders
are a tie). `limit` applies per category. Scores per category and turn; `score` (mean rating) is primary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.data.tokenize import tokenize_prompt
from tunesmith.data.types import Message
from tunesmith.errors import DataError, UserError
from tunesmith.evaluate import judge as J
from tunesmith.evaluate.benchmarks.base import Benchmark, Outcome, RunSettings
from tunesmith.evaluate.generate import generate
from tunesmith.evaluate.stats import mean

SECOND_TURN_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the "
    "user question displayed below. Your evaluation should consider factors such as the helpfulness, relevance, "
    "accuracy, depth, creativity, and level of detail of the response. {reference_note}You evaluation should "
    "focus on the assistant's answer to the second user question. Begin your evaluation by providing a short "
    "explanation. Be as objective as possible. After providing your explanation, you must rate the response on a "
    "scale of 1 to 10 by strictly following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n")
REFERENCE_NOTE = ("You will be given a reference answer. Begin your evaluation by comparing the assistant's answer "
                  "with the reference answer. Identify and correct any mistakes. ")
CONVERSATION = ("<|The Start of {who} Conversation with User|>\n\n### User:\n{q1}\n\n### {role}:\n{a1}\n\n"
                "### User:\n{q2}\n\n### {role}:\n{a2}\n\n<|The End of {who} Conversation with User|>\n\n\n")
PAIR_SECOND_TURN_NOTE = ("You should focus on who provides a better answer to the second user question. ")


@dataclass(frozen=True)
class Question:
    id: str
    category: str
    turns: tuple[str, str]
    references: tuple[str, str] | None = None


def load(source: str) -> list[Question]:
    """Questions (with references where given) from the `mt_bench/` folder or its question.jsonl."""
    path = Path(source).expanduser()
    questions_file = path / "question.jsonl" if path.is_dir() else path
    if not questions_file.is_file():
        raise UserError(f"MT-Bench: {questions_file} not found (FastChat's mt_bench/question.jsonl)")
    references = _references(questions_file.parent)
    questions = []
    for number, row in enumerate(_jsonl(questions_file), start=1):
        turns = row.get("turns")
        if not isinstance(turns, list) or len(turns) != 2 or "question_id" not in row or "category" not in row:
            raise DataError(f"{questions_file}:{number}: an MT-Bench row has question_id, category, turns[2]")
        qid = str(row["question_id"])
        questions.append(Question(qid, row["category"], (turns[0], turns[1]), references.get(qid)))
    return questions


def _references(folder: Path) -> dict[str, tuple[str, str]]:
    files = sorted(folder.glob("reference_answer*.jsonl")) + sorted(folder.glob("reference_answer/*.jsonl"))
    found = {}
    for file in files[:1]:
        for row in _jsonl(file):
            turns = row["choices"][0]["turns"]
            found[str(row["question_id"])] = (turns[0], turns[1] if len(turns) > 1 else turns[0])
    return found


def _jsonl(file: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise DataError(f"{file}: not JSON Lines ({e})") from None


def chosen(questions: list[Question], limit: int | None) -> list[Question]:
    """The first `limit` questions of every category (all without a limit), in file order."""
    seen: dict[str, int] = {}
    picked = []
    for q in questions:
        seen[q.category] = seen.get(q.category, 0) + 1
        if limit is None or seen[q.category] <= limit:
            picked.append(q)
    return picked


def answer(model: Any, tokenizer: Any, questions: list[Question], settings: RunSettings) -> list[tuple[str, str]]:
    """Both turns' greedy answers under the model's chat template (turn 2 after its own turn-1 answer)."""

    def reply(conversations: list[list[Message]]) -> list[str]:
        prompts = [tokenize_prompt(tokenizer, messages) for messages in conversations]
        outputs = generate(model, tokenizer, prompts, max_new_tokens=settings.max_new_tokens,
                           stop=[settings.end_of_turn] if settings.end_of_turn else [], batch_size=settings.batch_size)
        return [out.strip() for out in outputs]

    first = reply([[Message("user", q.turns[0])] for q in questions])
    second = reply([[Message("user", q.turns[0]), Message("assistant", a), Message("user", q.turns[1])]
                    for q, a in zip(questions, first)])
    return list(zip(first, second))


def single_prompts(q: Question, answers: tuple[str, str]) -> list[tuple[str, str]]:
    """(system, prompt) for rating turn 1 and turn 2 of one question (FastChat's single-v1 prompts)."""
    if q.references:
        turn1 = J.SINGLE_REFERENCE_PROMPT.format(question=q.turns[0], reference=q.references[0], answer=answers[0])
    else:
        turn1 = J.SINGLE_PROMPT.format(question=q.turns[0], answer=answers[0])
    conversation = CONVERSATION.format(who="Assistant's", role="Assistant", q1=q.turns[0], a1=answers[0],
                                       q2=q.turns[1], a2=answers[1])
    if q.references:
        reference = CONVERSATION.format(who="Reference Answer", role="Reference answer", q1=q.turns[0],
                                        a1=q.references[0], q2=q.turns[1], a2=q.references[1])
        conversation = reference + conversation
    system = SECOND_TURN_SYSTEM.format(reference_note=REFERENCE_NOTE if q.references else "")
    return [(J.SINGLE_SYSTEM, turn1), (system, conversation)]


def _parallel(function: Callable[[Any], Any], items: list[Any], concurrency: int = 4) -> list[Any]:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(function, items))


def _ask(client: J.JudgeClient, system: str, prompt: str) -> str | None:
    try:
        return client.complete(system, prompt)
    except J.JudgeError:
        return None


def run(model: Any, tokenizer: Any, questions: list[Question], settings: RunSettings) -> Outcome:
    """Answer both turns, have the judge rate each, aggregate per turn and category."""
    if settings.judge is None:
        raise UserError("--suite mtbench needs a judge: --judge URL (an OpenAI-compatible endpoint)")
    picked = chosen(questions, settings.limit)
    answers = answer(model, tokenizer, picked, settings)
    jobs = [(i, t, system, prompt) for i, (q, a) in enumerate(zip(picked, answers))
            for t, (system, prompt) in enumerate(single_prompts(q, a))]
    replies = _parallel(lambda job: _ask(settings.judge, job[2], job[3]), jobs)
    ratings: list[list[float | None]] = [[None, None] for _ in picked]
    judgments: list[list[str | None]] = [[None, None] for _ in picked]
    for (i, t, _, _), text in zip(jobs, replies):
        judgments[i][t] = text
        ratings[i][t] = J.parse_rating(text) if text is not None else None
    records = [{"id": q.id, "category": q.category, "turns": list(q.turns), "answers": list(a),
                "references": list(q.references) if q.references else None, "ratings": r, "judgments": j}
               for q, a, r, j in zip(picked, answers, ratings, judgments)]
    http = sum(text is None for text in replies)
    return Outcome(_summary(records, http, len(replies) - http - _rated(records)), records)


def _rated(records: list[dict[str, Any]]) -> int:
    return sum(r is not None for rec in records for r in rec["ratings"])


def _turn_means(records: list[dict[str, Any]]) -> dict[str, Any]:
    def avg(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    turns = [[rec["ratings"][t] for rec in records if rec["ratings"][t] is not None] for t in (0, 1)]
    return {"n": len(records), "turn1": avg(turns[0]), "turn2": avg(turns[1]), "score": avg(turns[0] + turns[1])}


def _summary(records: list[dict[str, Any]], http: int, unparseable: int) -> dict[str, Any]:
    result = _turn_means(records)
    estimate = mean([r for rec in records for r in rec["ratings"] if r is not None])
    result.update(rated=_rated(records), failures={"http": http, "unparseable": unparseable},
                  intervals={"score": {"se": estimate.se, "ci95": [estimate.low, estimate.high]}})
    categories = dict.fromkeys(rec["category"] for rec in records)
    result["categories"] = {c: _turn_means([rec for rec in records if rec["category"] == c]) for c in categories}
    return result


def _pair_prompt(q: Question, turn: int, mine: tuple[str, str], theirs: tuple[str, str]) -> tuple[str, str]:
    """(system, prompt) comparing answer A (`mine`) with B (`theirs`) on `turn` (FastChat's pair-v2 prompts)."""
    if turn == 0:
        block = J.REFERENCE_BLOCK.format(reference=q.references[0]) if q.references else ""
        return J.PAIR_SYSTEM, J.PAIR_PROMPT.format(question=q.turns[0], reference_block=block,
                                                   answer_a=mine[0], answer_b=theirs[0])
    a = CONVERSATION.format(who="Assistant A's", role="Assistant A", q1=q.turns[0], a1=mine[0], q2=q.turns[1],
                            a2=mine[1])
    b = CONVERSATION.format(who="Assistant B's", role="Assistant B", q1=q.turns[0], a1=theirs[0], q2=q.turns[1],
                            a2=theirs[1])
    system = J.PAIR_SYSTEM.replace("Avoid any position", PAIR_SECOND_TURN_NOTE + "Avoid any position")
    return system, a + b


def compare(tuned: Outcome, base: Outcome, settings: RunSettings) -> dict[str, Any]:
    """Pairwise tuned vs base per question and turn, judged in both orders; win rate counts ties as half."""
    base_by_id = {rec["id"]: rec for rec in base.samples}
    pairs = [(rec, base_by_id[rec["id"]]) for rec in tuned.samples if rec["id"] in base_by_id]

    def judge(job: tuple[dict[str, Any], dict[str, Any], int]) -> str:
        mine, theirs, turn = job
        references = tuple(mine["references"]) if mine.get("references") else None
        q = Question(mine["id"], mine["category"], tuple(mine["turns"]), references)
        one = _ask(settings.judge, *_pair_prompt(q, turn, tuple(mine["answers"]), tuple(theirs["answers"])))
        two = _ask(settings.judge, *_pair_prompt(q, turn, tuple(theirs["answers"]), tuple(mine["answers"])))
        verdicts = [J.parse_verdict(text) if text is not None else "http" for text in (one, two)]
        if "http" in verdicts or None in verdicts:
            return "http" if "http" in verdicts else "unparseable"
        first = {"A": "win", "B": "loss", "C": "tie"}[verdicts[0]]
        second = {"A": "loss", "B": "win", "C": "tie"}[verdicts[1]]
        return first if first == second else "tie"

    jobs = [(mine, theirs, turn) for mine, theirs in pairs for turn in (0, 1)]
    outcomes = _parallel(judge, jobs)
    for (mine, _, turn), outcome in zip(jobs, outcomes):
        mine.setdefault("pairwise", [None, None])[turn] = outcome
    result = _win_rate(outcomes)
    categories = dict.fromkeys(mine["category"] for mine, _ in pairs)
    result["categories"] = {c: _win_rate([o for (m, _, _), o in zip(jobs, outcomes) if m["category"] == c])
                            for c in categories}
    return result


def _win_rate(outcomes: list[str]) -> dict[str, Any]:
    points = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[o] for o in outcomes if o in ("win", "tie", "loss")]
    estimate = mean(points)
    return {"wins": outcomes.count("win"), "losses": outcomes.count("loss"), "ties": outcomes.count("tie"),
            "win_rate": estimate.value if points else None, "n": len(outcomes),
            "failures": {"http": outcomes.count("http"), "unparseable": outcomes.count("unparseable")},
            "intervals": {"win_rate": {"se": estimate.se, "ci95": [estimate.low, estimate.high]}}}


BENCHMARK = Benchmark(
    name="mtbench", summary="80 two-turn questions, 8 categories, rated 1-10 by an LLM judge",
    data_glob="mt_bench", load=load, run=run, shots=0, primary="score", gated=False, needs_judge=True,
    compare=compare,
)
