"""LLM-as-judge, MT-Bench style, against any OpenAI-compatible `/v1/chat/completions` endpoint.

Two protocols (Zheng et al., 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena"), with their
prompts below:
  * single-answer grading: the judge explains, then rates one answer 1-10 as "[[7]]" (with a reference
    answer when the question has one, for questions with a right answer);
  * pairwise comparison: the judge sees answers A and B and says "[[A]]", "[[B]]" or "[[C]]" (tie). Each pair
    is judged in both orders to cancel position bias; two verdicts that disagree count as a tie.
Nothing here crashes on a bad judge: HTTP errors (after bounded retries) and verdicts that cannot be parsed
are counted in the result, so a flaky endpoint costs some items, not the evaluation.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tunesmith.errors import DataError, UserError

SINGLE_SYSTEM = "You are a helpful assistant."
SINGLE_PROMPT = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, "
    "you must rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for "
    "example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n"
    "[The End of Assistant's Answer]"
)
SINGLE_REFERENCE_PROMPT = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider correctness and "
    "helpfulness. You will be given a reference answer and the assistant's answer. Begin your evaluation by "
    "comparing the assistant's answer with the reference answer. Identify and correct any mistakes. Be as "
    "objective as possible. After providing your explanation, you must rate the response on a scale of 1 to 10 "
    "by strictly following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n[Question]\n"
    "{question}\n\n[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. You should choose the assistant that follows the user's instructions "
    "and answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of "
    "the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective "
    "as possible. After providing your explanation, output your final verdict by strictly following this "
    "format: \"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie."
)
PAIR_PROMPT = (
    "[User Question]\n{question}\n\n{reference_block}[The Start of Assistant A's Answer]\n{answer_a}\n"
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
    "[The End of Assistant B's Answer]"
)
REFERENCE_BLOCK = "[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"

_RATING_PATTERNS = (
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*(?:/\s*10\s*)?\]\]"),
    re.compile(r"rating\s*[:=]?\s*\**\s*\[?\s*(\d+(?:\.\d+)?)", re.IGNORECASE),
    re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]"),
)
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
_RETRY_STATUS = frozenset({408, 409, 429})
EXAMPLES_KEPT = 3


@dataclass(frozen=True)
class JudgeQuestion:
    question: str
    reference: str | None = None


class JudgeError(Exception):
    """The endpoint gave no usable completion (HTTP error after retries, malformed response)."""


@dataclass(frozen=True)
class JudgeClient:
    """A minimal OpenAI-compatible chat client: greedy (temperature 0), timeouts, bounded retries."""

    url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    retries: int = 2
    backoff_s: float = 1.0
    max_tokens: int = 1024

    @property
    def endpoint(self) -> str:
        """`http://host:8000`, `.../v1` and `.../v1/chat/completions` all mean the chat completions route."""
        url = self.url.rstrip("/")
        if url.endswith("/chat/completions"):
            return url
        return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")

    def complete(self, system: str, prompt: str) -> str:
        """The judge's reply; retries transport errors, timeouts, 429 and 5xx with exponential backoff."""
        body = {
            "model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                response = httpx.post(self.endpoint, json=body, headers=headers, timeout=self.timeout_s)
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {e}"
                continue
            if response.status_code in _RETRY_STATUS or response.status_code >= 500:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise JudgeError(f"HTTP {response.status_code}: {response.text[:200]}")
            return _content(response)
        raise JudgeError(f"{problem} after {self.retries + 1} attempts")


def _content(response: httpx.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise JudgeError(f"not an OpenAI chat completion ({type(e).__name__}): {response.text[:200]}") from None
    if not isinstance(content, str):
        raise JudgeError(f"the completion's content is {type(content).__name__}, not text")
    return content


def parse_rating(text: str) -> float | None:
    """The 1-10 rating in a judgment: the last "[[7]]", else "Rating: 7", else "[7]"; None if none is valid."""
    for pattern in _RATING_PATTERNS:
        found = [float(m) for m in pattern.findall(text) if 1.0 <= float(m) <= 10.0]
        if found:
            return found[-1]
    return None


def parse_verdict(text: str) -> str | None:
    """"A", "B" or "C" (tie) from the last "[[X]]" in a pairwise judgment; None if there is none."""
    found = _VERDICT.findall(text)
    return found[-1] if found else None


def load_questions(file: str) -> list[JudgeQuestion]:
    """JSON Lines of `{"question": ..., "reference": optional}`."""
    path = Path(file)
    if not path.is_file():
        raise UserError(f"judge questions file not found: {file}")
    questions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{file}:{number}: not JSON ({e})") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise DataError(f"{file}:{number}: a judge question is {{\"question\": ..., \"reference\": optional}}")
        reference = row.get("reference")
        questions.append(JudgeQuestion(row["question"], reference if isinstance(reference, str) else None))
    if not questions:
        raise UserError(f"{file} holds no questions")
    return questions


def grade_answers(client: JudgeClient, questions: list[JudgeQuestion], answers: list[str],
                  concurrency: int = 4) -> dict[str, Any]:
    """Single-answer grading: the mean 1-10 rating over the answers the judge rated."""

    def grade(pair: tuple[JudgeQuestion, str]) -> tuple[float | None, str]:
        q, answer = pair
        if q.reference is not None:
            prompt = SINGLE_REFERENCE_PROMPT.format(question=q.question, reference=q.reference, answer=answer)
        else:
            prompt = SINGLE_PROMPT.format(question=q.question, answer=answer)
        try:
            judgment = client.complete(SINGLE_SYSTEM, prompt)
        except JudgeError as e:
            return None, f"error: {e}"
        return parse_rating(judgment), judgment

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        graded = list(pool.map(grade, zip(questions, answers)))
    ratings = [rating for rating, _ in graded if rating is not None]
    http = sum(1 for rating, text in graded if rating is None and text.startswith("error: "))
    return {
        "score": sum(ratings) / len(ratings) if ratings else None, "n": len(graded), "rated": len(ratings),
        "failures": {"http": http, "unparseable": len(graded) - len(ratings) - http},
        "examples": [{"question": q.question, "answer": a, "rating": r, "judgment": t}
                     for q, a, (r, t) in list(zip(questions, answers, graded))[:EXAMPLES_KEPT]],
    }


def compare_answers(client: JudgeClient, questions: list[JudgeQuestion], tuned: list[str], base: list[str],
                    concurrency: int = 4) -> dict[str, Any]:
    """Pairwise, tuned vs base, each pair judged twice with the answers swapped; win_rate counts ties as half."""

    def verdict(q: JudgeQuestion, answer_a: str, answer_b: str) -> str:
        block = REFERENCE_BLOCK.format(reference=q.reference) if q.reference is not None else ""
        prompt = PAIR_PROMPT.format(question=q.question, reference_block=block, answer_a=answer_a, answer_b=answer_b)
        try:
            return parse_verdict(client.complete(PAIR_SYSTEM, prompt)) or "unparseable"
        except JudgeError:
            return "http"

    def judge(item: tuple[JudgeQuestion, str, str]) -> str:
        q, mine, theirs = item
        raw = (verdict(q, mine, theirs), verdict(q, theirs, mine))  # tuned is A, then tuned is B
        for failure in ("http", "unparseable"):
            if failure in raw:
                return failure
        first, second = {"A": "win", "B": "loss", "C": "tie"}[raw[0]], {"A": "loss", "B": "win", "C": "tie"}[raw[1]]
        return first if first == second else "inconsistent"

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        outcomes = list(pool.map(judge, zip(questions, tuned, base)))
    counts = {key: outcomes.count(key) for key in ("win", "loss", "tie", "inconsistent", "http", "unparseable")}
    decided = counts["win"] + counts["loss"] + counts["tie"] + counts["inconsistent"]
    ties = counts["tie"] + counts["inconsistent"]
    return {
        "wins": counts["win"], "losses": counts["loss"], "ties": ties, "inconsistent": counts["inconsistent"],
        "win_rate": (counts["win"] + 0.5 * ties) / decided if decided else None, "n": len(outcomes),
        "failures": {"http": counts["http"], "unparseable": counts["unparseable"]},
    }


def served_model(url: str, api_key: str | None = None, timeout_s: float = 10.0) -> str:
    """The first model an OpenAI-compatible endpoint lists at /v1/models (for a judge named by URL alone)."""
    base = url.rstrip("/").removesuffix("/chat/completions").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(base + "/v1/models", headers=headers, timeout=timeout_s)
        models = [m["id"] for m in response.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"the judge at {url} did not list its models ({type(e).__name__}: {e}); "
                        "name one with --judge-model") from None
    if not models:
        raise UserError(f"the judge at {url} lists no models; name one with --judge-model")
    return models[0]
