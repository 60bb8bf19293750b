"""`tunesmith eval RUN` never sends a key to a URL that the run folder names: the judge URL and the key come
from the command line or the environment of the user running eval. Checked against a local HTTP server that
records every request's path and headers (names in lower case)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.test_train import make_recipe, tiny_setup  # noqa: F401  (fixture)
from tunesmith.errors import UserError
from tunesmith.evaluate.judge import JudgeClient, JudgeError, served_model
from tunesmith.evaluate.judge_endpoint import judge_endpoint, judge_key
from tunesmith.evaluate.run_eval import EvalOptions, run_eval
from tunesmith.train.loop import train

SECRET = "run-folder-chose-this-secret"


class Recorder(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge that rates everything 7 and remembers what it was sent."""

    seen: list[dict] = []

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: str) -> None:
        self.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})

    def do_GET(self) -> None:  # noqa: N802
        self._record("")
        self._answer({"object": "list", "data": [{"id": "recorder", "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802
        self._record(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
        if self.path.startswith("/moved/"):  # a judge that sends its callers on elsewhere
            self.send_response(307)
            self.send_header("Location", "/v1/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._answer({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Rating: [[7]]"}}]})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder():
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Recorder.seen
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def hostile_run(tiny_setup, tmp_path: Path, recorder, monkeypatch) -> Path:  # noqa: F811
    """A finished run whose run.json names a judge URL and the variable of a secret the user holds."""
    for name in ("TUNESMITH_JUDGE_URL", "TUNESMITH_JUDGE_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SOME_CLOUD_SECRET", SECRET)
    run = train(make_recipe(tiny_setup, tmp_path / "runs", max_steps=1)).path
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "Say hi."}\n{"question": "Name a colour."}\n')
    record = json.loads((run / "run.json").read_text())
    record["recipe"]["eval"]["judge"] = {"url": f"{recorder[0]}/collector/v1", "key_env": "SOME_CLOUD_SECRET",
                                         "questions": str(questions)}
    (run / "run.json").write_text(json.dumps(record))
    return run


def test_a_judge_named_by_the_run_folder_gets_no_request(hostile_run: Path, recorder, capsys) -> None:
    with pytest.raises(UserError, match="need --judge URL"):
        run_eval(EvalOptions(target=str(hostile_run), suites=["judge"], max_new_tokens=2))
    assert recorder[1] == []
    assert "eval.judge.url" in capsys.readouterr().err


def test_the_users_judge_gets_the_users_key_and_never_the_run_folders(hostile_run: Path, recorder, monkeypatch,
                                                                     capsys) -> None:
    monkeypatch.setenv("TUNESMITH_JUDGE_KEY", "the-users-own-key")
    outcome = run_eval(EvalOptions(target=str(hostile_run), suites=["judge"], max_new_tokens=2,
                                   judge_url=f"{recorder[0]}/mine/v1"))
    assert outcome.record["results"]["judge"]["score"] == 7.0
    seen = recorder[1]
    assert {r["path"] for r in seen} == {"/mine/v1/models", "/mine/v1/chat/completions"} and len(seen) == 3
    assert all(r["headers"].get("authorization") == "Bearer the-users-own-key" for r in seen)
    assert not any(SECRET in json.dumps(r) for r in seen)
    err = " ".join(capsys.readouterr().err.split())
    assert "eval.judge.key_env 'SOME_CLOUD_SECRET'; ignored" in err and "eval.judge.url" in err


def test_where_the_endpoint_and_key_come_from() -> None:
    env = {"TUNESMITH_JUDGE_URL": "http://env/v1", "TUNESMITH_JUDGE_KEY": "k1", "OPENAI_API_KEY": "k2", "MINE": "k3"}
    run_block = {"url": "http://run/v1", "key_env": "MINE"}
    chosen = judge_endpoint(None, None, run_block, env=env)
    assert chosen.url == "http://env/v1" and chosen.key_env is None and len(chosen.warnings) == 2
    assert judge_endpoint("http://cli/v1", "MINE", run_block, env=env) == judge_endpoint(
        "http://cli/v1", "MINE", run_block, env=env)
    assert judge_endpoint("http://cli/v1", "MINE", run_block, env=env).url == "http://cli/v1"
    assert judge_endpoint(None, None, {"key_env": "OPENAI_API_KEY"}, env={}).warnings == ()  # the schema's default
    assert judge_key(None, env) == "k1" and judge_key("MINE", env) == "k3"
    assert judge_key(None, {"OPENAI_API_KEY": "k2"}) == "k2" and judge_key(None, {}) is None


def test_the_openai_clients_own_settings_never_reach_the_judge(recorder, monkeypatch) -> None:
    """The openai client reads OPENAI_* variables by itself, meant for api.openai.com: the judge gets the key the
    user chose for it, or none, and none of those variables."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-secret")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-secret")
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "Authorization: Bearer sk-custom-secret\nX-Team: team-secret")
    url = f"{recorder[0]}/v1"
    assert served_model(url) == "recorder"
    assert JudgeClient(url, "recorder").complete("system", "prompt") == "Rating: [[7]]"
    assert JudgeClient(url, "recorder", api_key="chosen").complete("system", "prompt") == "Rating: [[7]]"
    monkeypatch.delenv("OPENAI_CUSTOM_HEADERS")
    assert JudgeClient(url, "recorder").complete("system", "prompt") == "Rating: [[7]]"
    seen = recorder[1]
    assert [r["headers"].get("authorization") for r in seen] == [None, None, "Bearer chosen", None]
    assert not any("secret" in json.dumps(r) for r in seen), seen


def test_a_judge_that_redirects_gets_no_second_request(recorder) -> None:
    with pytest.raises(JudgeError, match="HTTP 307"):
        JudgeClient(f"{recorder[0]}/moved/v1", "recorder", api_key="chosen", retries=0).complete("system", "prompt")
    assert [r["path"] for r in recorder[1]] == ["/moved/v1/chat/completions"]


def test_an_unreachable_judge_is_a_user_error_naming_it() -> None:
    with pytest.raises(UserError, match=r"the judge at http://127.0.0.1:9/v1 did not list its models \(ConnectError"):
        served_model("http://127.0.0.1:9/v1", timeout_s=2)
