"""Overload on `tunesmith serve` with its default settings: `--requests` (200) chat requests sent at once
through the official `openai` client (no retries), while /health is probed, then a 10 MB prompt while
/health is probed again. The server is the real CLI (`python -m tunesmith serve`) in its own process on
loopback: default queue (sized from measured throughput), default body limit, default request log.

    python -m bench.serve_overload [--requests 200] [--max-tokens 16] [--retries 0] [--model PATH | --tiny]

The model is the real stories260K Llama (../shared/fixtures/stories260k) when present, else (or with
`--tiny`) a tiny random-init Llama (tunesmith/testing). Prints counts by status, p50/p99 latency (client side), how many 503s
lacked Retry-After, /health latency under load, and what the 10 MB prompt got. Exit status 1 when any
request failed other than by a 503 carrying Retry-After, or /health took over a second.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from tunesmith.testing.tiny import save_tiny

STORIES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stories260k"
PROMPT = "Once upon a time, a little girl named Lily"


async def _chat(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> tuple[float, int, bool]:
    """(latency s, HTTP status, whether a 503 carried Retry-After)."""
    start = time.perf_counter()
    try:
        await client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                             max_tokens=max_tokens, temperature=0)
        return time.perf_counter() - start, 200, False
    except openai.APIStatusError as e:
        return time.perf_counter() - start, e.status_code, "retry-after" in e.response.headers
    except openai.APIError:
        return time.perf_counter() - start, 0, False  # no HTTP answer at all: connection error or timeout


def _probe_health(url: str, stop: Any, out: Any) -> None:
    """In its own process (so the client's busy event loop is not what is measured): GET /health every 50 ms."""
    latencies = []
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.get(url)
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
    out.put(latencies)


class HealthProbe:
    """/health latencies while a `with` block runs."""

    def __init__(self, url: str) -> None:
        self.stop, self.out = multiprocessing.Event(), multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_probe_health, args=(url, self.stop, self.out), daemon=True)
        self.latencies: list[float] = []

    def __enter__(self) -> HealthProbe:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.latencies = self.out.get(timeout=120)
        self.process.join(timeout=30)


async def _overload(url: str, model: str, requests: int, max_tokens: int, retries: int) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=retries, timeout=600,
                                http_client=openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=1000)))
    with HealthProbe(url + "/health") as probe:
        start = time.perf_counter()
        results = await asyncio.gather(*(_chat(client, model, max_tokens) for _ in range(requests)))
        wall = time.perf_counter() - start
    health = probe.latencies
    await client.close()
    ok = sorted(r[0] for r in results if r[1] == 200)
    return {"wall_s": wall, "statuses": collections.Counter(r[1] for r in results),
            "p50_s": statistics.median(ok) if ok else None, "p99_s": ok[int(0.99 * (len(ok) - 1))] if ok else None,
            "503_without_retry_after": sum(1 for r in results if r[1] == 503 and not r[2]),
            "retry_after_seen": sum(1 for r in results if r[2]), "health_max_s": max(health, default=0.0),
            "health_p50_s": statistics.median(health) if health else 0.0}


async def _huge_prompt(url: str, model: str, megabytes: int) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hello world " * (megabytes * 87_382)}]}
    with HealthProbe(url + "/health") as probe:
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=600) as client:
            response = await client.post(url + "/v1/chat/completions", json=body)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.2)
    health = probe.latencies
    return {"status": response.status_code, "seconds": elapsed, "health_max_s": max(health, default=0.0)}


def _start_server(model: Path, out: Path) -> tuple[subprocess.Popen, str, Path]:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    log = out / "requests.jsonl"
    log.unlink(missing_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "tunesmith", "serve", str(model), "--port", str(port),
                               "--request-log", str(log)], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return server, url, log
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--retries", type=int, default=0, help="the openai client's max_retries (it honours "
                        "Retry-After); 0 counts every 503")
    parser.add_argument("--huge-mb", type=int, default=10, help="size of the oversized prompt")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="serve a tiny random-init Llama, even with stories260K")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-overload"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or (STORIES if (STORIES / "config.json").is_file() and not args.tiny else None)
    if model is None:
        model = args.out / "tiny-llama"
        if not (model / "config.json").is_file():
            save_tiny("llama", model, vocab_size=300)
    server, url, log = _start_server(model, args.out)
    try:
        served = httpx.get(url + "/v1/models").json()["data"][0]["id"]
        print(f"measured at start: {httpx.get(url + '/health').json()['measured_tokens_per_s']} budgeted tokens/s")
        load = asyncio.run(_overload(url, served, args.requests, args.max_tokens, args.retries))
        print(f"measured after the load: {httpx.get(url + '/health').json()['measured_tokens_per_s']} tokens/s")
        huge = asyncio.run(_huge_prompt(url, served, args.huge_mb))
    finally:
        server.terminate()
        server.wait(timeout=60)
    _report(model, args, load, huge, log)


def _report(model: Path, args: argparse.Namespace, load: dict[str, Any], huge: dict[str, Any], log: Path) -> None:
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(load["statuses"].items()))
    failed = sum(c for s, c in load["statuses"].items() if s not in (200, 503)) + load["503_without_retry_after"]
    p50 = f"{load['p50_s']:.2f}" if load["p50_s"] is not None else "-"
    p99 = f"{load['p99_s']:.2f}" if load["p99_s"] is not None else "-"
    print(f"model {model.name}, {args.requests} concurrent chats, max_tokens {args.max_tokens}, default settings, "
          f"client retries {args.retries}")
    print(f"statuses {{{statuses}}}; failed (not 200, not 503 + Retry-After) {failed}; wall {load['wall_s']:.1f} s")
    print(f"latency of the 200s: p50 {p50} s, p99 {p99} s; 503s with Retry-After {load['retry_after_seen']}")
    print(f"/health under load: p50 {load['health_p50_s'] * 1000:.0f} ms, max {load['health_max_s'] * 1000:.0f} ms")
    print(f"{args.huge_mb} MB prompt: {huge['status']} in {huge['seconds']:.2f} s; /health max during it "
          f"{huge['health_max_s'] * 1000:.0f} ms")
    lines = len(log.read_text().splitlines()) if log.is_file() else 0
    print(f"request log {log}: {lines} lines")
    slow_health = max(load["health_max_s"], huge["health_max_s"]) > 1.0
    raise SystemExit(1 if failed or slow_health or huge["status"] not in (400, 413) else 0)


if __name__ == "__main__":
    main()
