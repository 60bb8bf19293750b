"""`tunesmith serve` against one oversized or out-of-range request: a 413 before the body is read, a 400 before
a prompt too long for the context is tokenized, a 400 (not a 500 for the whole batch) for numbers beyond what
the engine takes, 503s that say when to retry, docs behind the key, and the request log."""

from __future__ import annotations

import json
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tunesmith.serve.admission import Admission
from tunesmith.serve.completions import chat_prompt, text_prompt
from tunesmith.serve.errors import ApiError
from tunesmith.serve.local import local_server
from tunesmith.serve.schemas import ChatRequest, CompletionRequest
from tunesmith.serve.server import ServeOptions, build
from tunesmith.testing.tiny import save_tiny

KEY = "limits-key"
CHAT = [{"role": "user", "content": "Once upon a time"}]
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("limits") / "base", vocab_size=300)


@pytest.fixture(scope="module")
def client(base: Path):
    app, _ = build(ServeOptions([str(base)], api_key=KEY))
    with TestClient(app) as test_client:
        yield test_client


def chat(client: TestClient, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", headers=AUTH,
                       json={"model": "base", "messages": CHAT, "max_tokens": 4, **body})


@pytest.mark.parametrize("field, value", [
    ("seed", 2**64), ("seed", 2**63), ("seed", -(2**63) - 1), ("max_tokens", 0), ("max_tokens", 2**40),
    ("max_completion_tokens", 0), ("n", 0), ("n", 17), ("temperature", -0.1), ("temperature", 2.5),
    ("top_p", 0), ("top_p", 1.5), ("presence_penalty", 3), ("frequency_penalty", -3), ("top_logprobs", 21),
    ("logit_bias", {"5": 101}), ("logit_bias", {"x": 1}),
])
def test_every_numeric_field_is_bounded_at_validation(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        ChatRequest(model="m", messages=CHAT, **{field: value})


@pytest.mark.parametrize("field, value", [("logprobs", 6), ("best_of", 0), ("prompt", [2**40])])
def test_completion_fields_are_bounded(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        CompletionRequest(**{"model": "m", "prompt": "x", field: value})


def test_a_huge_seed_is_a_400_for_that_request_and_int64_seeds_all_work(client: TestClient) -> None:
    response = chat(client, seed=2**64)
    assert response.status_code == 400 and response.json()["error"]["param"] == "seed"
    for seed in (2**63 - 1, -(2**63)):  # the seed of choice i is seed + i: it wraps into the generator's range
        response = chat(client, seed=seed, n=3, temperature=1.0)
        assert response.status_code == 200, response.text
        assert len(response.json()["choices"]) == 3


def test_a_body_over_the_limit_is_413_before_it_is_read(base: Path) -> None:
    app, _ = build(ServeOptions([str(base)], max_body_bytes=64 * 1024))
    with TestClient(app) as test_client:
        big = json.dumps({"model": "base", "messages": [{"role": "user", "content": "x" * 100_000}]})
        response = test_client.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

        def chunked():  # no Content-Length: the bytes read are counted
            yield big[:50_000].encode()
            yield big[50_000:].encode()

        response = test_client.post("/v1/chat/completions", content=chunked(),
                                    headers={"content-type": "application/json"})
        assert response.status_code == 413 and "--max-body-bytes" in response.json()["error"]["message"]
        assert chat(test_client).status_code == 200


class RefusingTokenizer:
    """A tokenizer that fails the test if anything is tokenized."""

    def get_vocab(self) -> dict[str, int]:
        return {"abcd": 0}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the prompt was tokenized")

    apply_chat_template = __call__


def test_a_prompt_too_long_by_its_characters_is_refused_before_tokenizing(client: TestClient) -> None:
    from types import SimpleNamespace

    entry = SimpleNamespace(tokenizer=RefusingTokenizer(), token_chars=4, base=SimpleNamespace(context=512))
    too_long = "y" * (512 * 4 * 4 + 1)  # longest token 4 chars, normalizer slack 4
    for build_prompt, request in ((text_prompt, CompletionRequest(model="m", prompt=too_long)),
                                  (chat_prompt, ChatRequest(model="m", messages=[{"role": "user", "content": too_long}]))):
        with pytest.raises(ApiError) as err:
            build_prompt(entry, request)
        assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    start = time.perf_counter()  # 3 MB: tokenizing it would take ~10 s here
    response = chat(client, messages=[{"role": "user", "content": "hello world " * 250_000}])
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
    assert time.perf_counter() - start < 3


def test_health_stays_quick_while_a_10mb_prompt_is_refused(base: Path) -> None:
    with local_server(ServeOptions([str(base)], max_body_bytes=16 * 1024 * 1024)) as running:
        root = running.url.removesuffix("/v1")
        body = {"model": "base", "messages": [{"role": "user", "content": "hello world " * 900_000}]}
        latencies: list[float] = []
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                start = time.perf_counter()
                assert httpx.get(root + "/health").status_code == 200
                latencies.append(time.perf_counter() - start)

        with futures.ThreadPoolExecutor(1) as pool:
            probing = pool.submit(probe)
            response = httpx.post(running.url + "/chat/completions", json=body, timeout=120)
            done.set()
            probing.result()
        assert response.status_code == 400 and response.json()["error"]["code"] == "context_length_exceeded"
        assert latencies and max(latencies) < 1.0, max(latencies)
        huge = httpx.post(running.url + "/chat/completions", content=b"x" * (17 * 1024 * 1024), timeout=60)
        assert huge.status_code == 413


def test_docs_are_off_with_a_key_and_on_without(client: TestClient, base: Path) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404 and client.get(path, headers=AUTH).status_code == 404
    app, _ = build(ServeOptions([str(base)]))
    assert TestClient(app).get("/openapi.json").status_code == 200


def test_admission_follows_measured_throughput() -> None:
    rule = Admission(floor=4, max_wait_s=10.0, max_batch=16)
    assert rule.admits(3, 300) and not rule.admits(4, 4)  # nothing measured yet: the floor
    rule.record(work=16 * 16, seconds=2.0)  # 128 budgeted tokens/s: 10 s of work is 1280 tokens
    assert rule.admits(79, 1279) and not rule.admits(80, 1280)
    assert rule.retry_after_s(10, 3200) == 15  # 25 s of work, 15 s beyond the bound (a batch: 40 s)
    assert rule.retry_after_s(100, 1600) == 2  # 12.5 s of work, 2.5 s beyond; the next batch ends in 2 s
    rule.record(work=16 * 16, seconds=0.5)  # faster: 0.3 * 512 + 0.7 * 128 = 243.2 tokens/s
    assert rule.admits(150, 2400) and not rule.admits(150, 2440)
    fixed = Admission(floor=4, cap=2)
    assert fixed.admits(1, 16) and not fixed.admits(2, 32) and fixed.retry_after_s(2, 32) == 1


def test_the_queue_is_sized_at_start_from_a_timed_batch(base: Path) -> None:
    """The first burst meets a queue sized for this model: measured before the server accepts requests."""
    app, engine = build(ServeOptions([str(base)]))
    assert engine.admission.work_per_s is None
    with TestClient(app):
        assert engine.admission.work_per_s is not None and engine.admission.work_per_s > 0
        assert len(engine.history) == 0  # the timing batches are not served requests


def test_every_503_carries_retry_after(base: Path) -> None:
    app, engine = build(ServeOptions([str(base)], queue_size=1, max_batch=1))
    with TestClient(app) as test_client, futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: chat(test_client, max_tokens=200, stop=["never"]), range(6)))
    statuses = [r.status_code for r in responses]
    assert 503 in statuses and set(statuses) <= {200, 503}
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"]["code"] == "queue_full"


def test_request_log_has_one_line_per_request_and_no_prompt_or_key(base: Path, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "requests.jsonl"
    app, _ = build(ServeOptions([str(base)], api_key=KEY, request_log=log, max_body_bytes=4096))
    secret_prompt = "the secret plan"
    with TestClient(app) as test_client:
        # greedy: a sampled answer of the random model can end at its EOS before max_tokens
        ok = chat(test_client, messages=[{"role": "user", "content": secret_prompt}], temperature=0)
        stream = chat(test_client, stream=True, stream_options={"include_usage": True}, temperature=0)
        missing = chat(test_client, model="nope")
        big = chat(test_client, messages=[{"role": "user", "content": "x" * 5000}])
        unauthorized = test_client.get("/v1/models?api_key=" + KEY)
    assert [ok.status_code, stream.status_code, missing.status_code, big.status_code,
            unauthorized.status_code] == [200, 200, 404, 413, 401]
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["status"] for line in lines] == [200, 200, 404, 413, 401]
    assert lines[0]["route"] == "/v1/chat/completions" and lines[0]["model"] == "base"
    assert lines[0]["completion_tokens"] == 4 and lines[0]["prompt_tokens"] > 0
    assert lines[1]["completion_tokens"] == 4 and lines[2]["model"] == "nope"
    assert all(line["latency_ms"] >= 0 and line["time"].endswith("+00:00") for line in lines)
    assert secret_prompt not in text and KEY not in text


def test_serve_says_where_the_request_log_is(base: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from tunesmith.cli import app
    from tunesmith.serve import server

    monkeypatch.chdir(tmp_path)
    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda built, **kwargs: started.append(built))
    server.serve(ServeOptions([str(base)]))
    err = capsys.readouterr().err
    (log,) = (tmp_path / "serve-logs").glob("requests-*.jsonl")
    assert f"request log: {log.resolve()}" in err
    result = CliRunner().invoke(app, ["serve", str(base), "--request-log", "mine.jsonl", "--max-body-bytes", "2048",
                                      "--max-queue-wait", "5"])
    assert result.exit_code == 0 and f"request log: {tmp_path / 'mine.jsonl'}" in result.output
    with TestClient(started[-1]) as cli_client:  # the options reached the app
        assert chat(cli_client, messages=[{"role": "user", "content": "x" * 3000}]).status_code == 413
    assert [json.loads(line)["status"] for line in (tmp_path / "mine.jsonl").read_text().splitlines()] == [413]


def test_without_a_key_only_loopback_hosts_are_answered(base: Path) -> None:
    """DNS rebinding: a web page whose domain resolves to 127.0.0.1 sends its own name as Host."""
    with local_server(ServeOptions([str(base)])) as running:
        port = running.url.split(":")[2].split("/")[0]
        for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert httpx.get(running.url + "/models", headers={"Host": host}).status_code == 200, host
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", ""):
            response = httpx.get(running.url + "/models", headers={"Host": host})
            assert response.status_code == 421 and response.json()["error"]["code"] == "host_not_allowed", host
    with local_server(ServeOptions([str(base)], api_key=KEY)) as running:  # with a key, the key guards
        assert httpx.get(running.url + "/models", headers={"Host": "my-server:80", **AUTH}).status_code == 200
