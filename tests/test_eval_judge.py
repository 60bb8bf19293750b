"""The LLM judge against a real OpenAI-compatible HTTP server on 127.0.0.1 (a thread in the test).

The server routes by path prefix, one canned judge each: `good` (rates 7; in pairs prefers the answer that
says Paris), `always_a` (position-biased), `malformed` (no verdict), `error` (HTTP 500), `slow` (past the
timeout). It records every request, so retries can be counted.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tunesmith.errors import UserError
from tunesmith.evaluate.judge import (
    JudgeClient,
    JudgeQuestion,
    compare_answers,
    grade_answers,
    load_questions,
    parse_rating,
    parse_verdict,
)


def _canned(route: str, prompt: str) -> str:
    if route == "malformed":
        return "The answer is fine, I suppose. Rating: high"
    pairwise = "[The Start of Assistant A's Answer]" in prompt
    if not pairwise:
        return "The answer is relevant and correct. Rating: [[7]]"
    if route == "always_a":
        return "A is better. [[A]]"
    a = re.search(r"Assistant A's Answer\]\n(.*?)\n\[The End", prompt, re.S).group(1)
    b = re.search(r"Assistant B's Answer\]\n(.*?)\n\[The End", prompt, re.S).group(1)
    verdict = "A" if "Paris" in a and "Paris" not in b else "B" if "Paris" in b and "Paris" not in a else "C"
    return f"Comparing both answers... [[{verdict}]]"


class _Judge(BaseHTTPRequestHandler):
    calls: Counter = Counter()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        route = self.path.strip("/").split("/")[0]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.calls[route] += 1
        _Judge.calls["auth:" + str(self.headers.get("Authorization"))] += 1
        if route == "error":
            self.send_response(500)
            self.end_headers()
            return
        if route == "slow":
            time.sleep(1.0)
        prompt = body["messages"][-1]["content"]
        reply = {"choices": [{"message": {"role": "assistant", "content": _canned(route, prompt)}}]}
        data = json.dumps(reply).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the `slow` judge's client gave up (its timeout): the point of that route

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)  # port 0: a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


QUESTIONS = [JudgeQuestion("What is the capital of France?", "Paris"), JudgeQuestion("Name a French city.")]


def test_single_answer_grading(judge_url):
    client = JudgeClient(f"{judge_url}/good/v1", "judge-model", api_key="sk-test")
    result = grade_answers(client, QUESTIONS, ["Paris.", "Lyon."])
    assert result["score"] == 7.0 and result["rated"] == 2
    assert result["failures"] == {"http": 0, "unparseable": 0}
    assert "Rating: [[7]]" in result["examples"][0]["judgment"]
    assert _Judge.calls["auth:Bearer sk-test"] >= 2


def test_pairwise_cancels_position_bias(judge_url):
    good = JudgeClient(f"{judge_url}/good", "judge-model")
    result = compare_answers(good, QUESTIONS, ["It is Paris.", "Paris!"], ["London.", "Rome."])
    assert (result["wins"], result["losses"], result["ties"]) == (2, 0, 0) and result["win_rate"] == 1.0
    result = compare_answers(good, QUESTIONS, ["London.", "Paris"], ["Paris.", "Paris"])
    assert (result["wins"], result["losses"], result["ties"]) == (0, 1, 1) and result["win_rate"] == 0.25
    biased = JudgeClient(f"{judge_url}/always_a/v1/chat/completions", "judge-model")
    result = compare_answers(biased, QUESTIONS, ["Paris.", "Paris"], ["London.", "Rome"])
    assert result["inconsistent"] == 2 and result["ties"] == 2 and result["win_rate"] == 0.5


def test_malformed_verdicts_are_counted_not_crashed(judge_url):
    client = JudgeClient(f"{judge_url}/malformed/v1", "judge-model")
    graded = grade_answers(client, QUESTIONS, ["Paris.", "Lyon."])
    assert graded["score"] is None and graded["rated"] == 0
    assert graded["failures"] == {"http": 0, "unparseable": 2}
    paired = compare_answers(client, QUESTIONS, ["Paris.", "Lyon."], ["London.", "Rome."])
    assert paired["failures"]["unparseable"] == 2 and paired["win_rate"] is None


def test_http_errors_are_retried_a_bounded_number_of_times(judge_url):
    before = _Judge.calls["error"]
    client = JudgeClient(f"{judge_url}/error/v1", "judge-model", retries=2)
    result = grade_answers(client, QUESTIONS, ["Paris.", "Lyon."])
    assert result["failures"] == {"http": 2, "unparseable": 0} and result["score"] is None
    assert _Judge.calls["error"] - before == 2 * 3  # each question: the first try and two retries
    slow = JudgeClient(f"{judge_url}/slow/v1", "judge-model", timeout_s=0.2, retries=0)
    assert grade_answers(slow, QUESTIONS[:1], ["Paris."])["failures"]["http"] == 1


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("Good answer. Rating: [[7]]", 7.0),
        ("Example format \"Rating: [[5]]\"... my verdict: [[8.5]]", 8.5),
        ("Rating: 6/10", 6.0),
        ("**Rating:** 9", 9.0),
        ("I give it [4]", 4.0),
        ("[[11]] is off the scale", None),
        ("no number at all", None),
    ],
)
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


def test_parse_verdict():
    assert parse_verdict("I prefer B. [[B]]") == "B"
    assert parse_verdict('format "[[A]]"... final verdict: [[C]]') == "C"
    assert parse_verdict("Assistant A is better") is None


def test_questions_file(tmp_path):
    file = tmp_path / "q.jsonl"
    file.write_text('{"question": "Capital of France?", "reference": "Paris"}\n\n{"question": "Hi?"}\n')
    assert load_questions(str(file)) == [JudgeQuestion("Capital of France?", "Paris"), JudgeQuestion("Hi?")]
    file.write_text('{"prompt": "no question key"}\n')
    with pytest.raises(UserError, match=r"q.jsonl:1: a judge question"):
        load_questions(str(file))


def test_eval_cli_judge_suite_end_to_end(judge_url, stories260k, tmp_path):
    """`tunesmith eval MODEL --suite judge`: the model answers under its chat template, the judge grades."""
    from typer.testing import CliRunner

    from tunesmith.cli import app

    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"question": "Tell me a story about a cat."}\n{"question": "Who is Lily?"}\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "eval", str(stories260k), "--suite", "judge", "--template", "plain", "--max-new-tokens", "12",
        "--judge-url", f"{judge_url}/good/v1", "--judge-model", "m", "--judge-questions", str(questions),
        "--out", str(out), "--dtype", "fp32",
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "eval.json").read_text())
    judged = record["results"]["judge"]
    assert judged["score"] == 7.0 and judged["n"] == 2 and judged["examples"][0]["answer"]
    assert "judge" in result.output and "7.00" in result.output  # the table row
