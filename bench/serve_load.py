"""Load on `tunesmith serve`: 200 concurrent chat requests per scenario through the official `openai` client,
on loopback, against the real server (uvicorn), with tiny style adapters (tunesmith/serve/styles.py).

    python -m bench.serve_load [--requests 200] [--max-tokens 16] [--out runs/bench-serve]

Scenarios, each `--requests` requests sent at once (the queue holds them all), greedy, `--max-tokens` each:
    base        every request for the base, on the server that also holds two LoRA adapters
    adapter     every request for one LoRA adapter (cats)
    mixed       base, cats and dogs interleaved; halfway, dogs is hot-swapped: dogs-v2 is loaded from the
                adapter root, later requests go to it, and dogs is deleted once its in-flight requests finish
    merged      every request for cats merged into the base (`merge_run`), on a server of its own
It prints p50/p95 latency (client side), completion tokens/s over the scenario's wall time, the number of
failed requests (must be 0), the batches the worker ran and how many of them held more than one model.
Bounded: `--repeats` rounds (default 2, the order reversed in the second) of 4 scenarios, `--timeout` s each;
each round hot-swaps the dogs adapter once (dogs -> dogs-v2 -> dogs-v3).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from tunesmith.serve.local import local_server
from tunesmith.serve.server import ServeOptions
from tunesmith.serve.styles import PROMPT, make_style_runs
from tunesmith.ship.merge import merge_run


async def _one(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> tuple[float, int, str | None]:
    start = time.perf_counter()
    try:
        response = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens, temperature=0)
        return time.perf_counter() - start, response.usage.completion_tokens, None
    except openai.APIError as e:
        return time.perf_counter() - start, 0, f"{model}: {e}"


async def _scenario(url: str, models: list[str], max_tokens: int,
                    swap: tuple[str, str] | None = None) -> dict[str, Any]:
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600,
                                http_client=openai.DefaultAsyncHttpxClient(limits=httpx.Limits(max_connections=1000)))
    start = time.perf_counter()
    half = len(models) // 2
    tasks = [asyncio.create_task(_one(client, m, max_tokens)) for m in models[:half]]
    if swap:  # hot swap in the middle: load the new adapter, send the rest of the old one's traffic there
        old, new = swap
        await client.post("/adapters", body={"name": new, "path": "dogs/adapter"}, cast_to=httpx.Response)
        models = models[:half] + [(new if m == old else m) for m in models[half:]]
    tasks += [asyncio.create_task(_one(client, m, max_tokens)) for m in models[half:]]
    if swap:  # and unload the old one: the server lets its in-flight requests finish first
        await client.delete(f"/adapters/{old}", cast_to=httpx.Response)
    results = await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    await client.close()
    latencies = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)
    return {"requests": len(results), "failed": [r[2] for r in results if r[2]], "wall_s": wall,
            "p50_s": statistics.median(latencies), "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
            "tokens": tokens, "tokens_per_s": tokens / wall}


def run(root: Path, requests: int, max_tokens: int, timeout: float, repeats: int) -> list[dict[str, dict[str, Any]]]:
    """`repeats` rounds of the four scenarios, the order reversed every other round (machine speed drifts)."""
    runs = make_style_runs(root)
    merged = root / "cats-merged"
    if not (merged / "config.json").is_file():
        merge_run(runs["cats"], merged, dtype="fp32")
    options = ServeOptions([str(runs["cats"]), str(runs["dogs"])], adapter_root=runs["cats"].parent,
                           queue_size=4 * requests)
    rounds = []
    with local_server(options) as server, \
            local_server(ServeOptions([f"cats-merged={merged}"], queue_size=4 * requests)) as merged_server:
        dogs = "dogs"
        for repeat in range(repeats):
            order = ["base", "adapter", "mixed", "merged"]
            results: dict[str, dict[str, Any]] = {}
            for name in order if repeat % 2 == 0 else order[::-1]:
                target = merged_server if name == "merged" else server
                models = {"base": ["base"] * requests, "adapter": ["cats"] * requests, "merged": ["cats-merged"] * requests,
                          "mixed": [("base", "cats", dogs)[i % 3] for i in range(requests)]}[name]
                swap = (dogs, f"dogs-v{repeat + 2}") if name == "mixed" else None
                seen = len(target.engine.history)
                results[name] = asyncio.run(asyncio.wait_for(_scenario(target.url, models, max_tokens, swap), timeout))
                batches = list(target.engine.history)[seen:]
                results[name].update(batches=len(batches), mixed_batches=sum(len(set(b)) > 1 for b in batches))
                dogs = swap[1] if swap else dogs
            rounds.append({name: results[name] for name in order})
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per scenario")
    parser.add_argument("--repeats", type=int, default=2, help="rounds, the scenario order reversed each round")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-serve"))
    args = parser.parse_args()
    rounds = run(args.out, args.requests, args.max_tokens, args.timeout, args.repeats)
    print(f"{'round':<6}{'scenario':<10}{'requests':>9}{'failed':>7}{'p50 s':>8}{'p95 s':>8}{'tokens/s':>10}"
          f"{'batches':>9}{'mixed':>7}")
    for index, results in enumerate(rounds, 1):
        for name, r in results.items():
            print(f"{index:<6}{name:<10}{r['requests']:>9}{len(r['failed']):>7}{r['p50_s']:>8.2f}{r['p95_s']:>8.2f}"
                  f"{r['tokens_per_s']:>10.1f}{r['batches']:>9}{r['mixed_batches']:>7}")
    failures = [f for results in rounds for r in results.values() for f in r["failed"]]
    for failure in failures[:5]:
        print("FAILED", failure)
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
