"""`prepare_data` with an empty data cache (cold) vs a filled one (warm), on the real skew-length chat data.

    python -m bench.data_prep               # 3 interleaved repeats of off / cold / warm (~15 s on 2 cores)
    python -m bench.data_prep --repeats 1   # one of each

Data and tokenizer are the packing bench's: Alpaca 1k + ShareGPT tool-call 300 as one messages file, the
8,000-token byte-level BPE tokenizer of the benchmark Llama (bench.common.save_bench_model), `template: plain`,
`max_seq_len` 512, 1% held out.

Three timings per repeat, in this order so a machine slowing down hits all alike:
  * off:  `data.cache: false`, the pipeline as it was before the cache: parse and tokenize;
  * cold: the cache folder emptied first: key (hashes of files and tokenizer), parse, tokenize, write;
  * warm: the same recipe again: key, read the file back.
Each call gets a freshly loaded tokenizer (loading is not timed), as a new `tunesmith train` would. "cold / off"
is the cost of filling the cache; "cold / warm" is what a second run saves. Wall seconds (perf_counter) and
this process's CPU seconds are both printed: on a shared machine wall time swings with other jobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import SHARED_DATA, machine_summary, save_bench_model, write_chat_data
from tunesmith.data.cache import CACHE_ENV, cache_dir
from tunesmith.data.pipeline import PreparedData, prepare_data
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict

DATA_FILES = ("alpaca_1k.jsonl", "sharegpt_glaive_toolcall_300.jsonl")
MODES = ("off", "cold", "warm")


def bench_recipe(model_dir: Path, data_file: Path, seq_len: int, cache: bool) -> dict[str, Any]:
    return {
        "name": "bench-data-prep", "model": str(model_dir), "method": "sft", "adapter": "lora",
        "data": {"train": str(data_file), "eval": 0.01, "template": "plain", "cache": cache},
        "train": {"max_seq_len": seq_len, "seed": 0},
    }


def timed_prepare(raw: dict[str, Any], model_dir: Path) -> tuple[PreparedData, float, float]:
    """One `prepare_data` call on a freshly loaded tokenizer: (result, wall seconds, CPU seconds)."""
    recipe = recipe_from_dict(raw, source="bench recipe")
    tokenizer = load_tokenizer(str(model_dir))
    wall, cpu = time.perf_counter(), time.process_time()
    data = prepare_data(recipe, tokenizer)
    return data, time.perf_counter() - wall, time.process_time() - cpu


def run_all(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    os.environ[CACHE_ENV] = str(workdir / "cache")  # never the user's own cache
    print("machine:", json.dumps(machine_summary()))
    data_file, texts = write_chat_data([Path(args.data_dir) / name for name in DATA_FILES],
                                       workdir / "data" / "chat.jsonl")
    model_dir = save_bench_model(workdir / "model", texts, max_positions=args.seq_len)
    print(f"data: {data_file} ({data_file.stat().st_size / 1e6:.2f} MB); cache: {cache_dir()}")
    seconds: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    results: dict[str, PreparedData] = {}
    for repeat in range(args.repeats):
        for mode in MODES:
            if mode == "cold":
                shutil.rmtree(cache_dir(), ignore_errors=True)
            raw = bench_recipe(model_dir, data_file, args.seq_len, cache=mode != "off")
            data, wall, cpu = timed_prepare(raw, model_dir)
            if data.from_cache != (mode == "warm"):
                raise RuntimeError(f"repeat {repeat} {mode}: expected from_cache={mode == 'warm'}, got {data.from_cache}")
            results[mode] = dataclasses.replace(data, from_cache=False)
            seconds[mode].append((wall, cpu))
            print(f"  repeat {repeat} {mode:4}: {wall:.3f} s wall, {cpu:.3f} s CPU", flush=True)
    if not results["off"] == results["cold"] == results["warm"]:
        raise RuntimeError("the cached data differs from a fresh preparation")
    data = results["warm"]
    [store] = [p for p in cache_dir().iterdir() if (p / "COMPLETE").is_file()]
    size = sum(f.stat().st_size for f in store.iterdir())
    print(f"prepared: {len(data.train)} train + {len(data.eval)} eval samples, "
          f"{sum(len(s) for s in data.train):,} train tokens; data store {size / 1e6:.2f} MB")
    print_table(seconds)


def print_table(seconds: dict[str, list[tuple[float, float]]]) -> None:
    """Median wall and CPU seconds per mode, and the ratios that matter."""
    wall = {mode: statistics.median(w for w, _ in runs) for mode, runs in seconds.items()}
    cpu = {mode: statistics.median(c for _, c in runs) for mode, runs in seconds.items()}
    print(f"\n{'mode':6} {'wall s (median)':>16} {'CPU s (median)':>15}  wall s per repeat")
    for mode in MODES:
        runs = ", ".join(f"{w:.3f}" for w, _ in seconds[mode])
        print(f"{mode:6} {wall[mode]:>16.3f} {cpu[mode]:>15.3f}  {runs}")
    print(f"cold / warm: {wall['cold'] / wall['warm']:.1f}x wall, {cpu['cold'] / cpu['warm']:.1f}x CPU "
          f"(a second run with the same inputs)")
    print(f"cold / off:  {wall['cold'] / wall['off']:.2f}x wall, {cpu['cold'] / cpu['off']:.2f}x CPU "
          f"(the cost of filling the cache)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.data_prep", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=512, help="train.max_seq_len")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-data-prep")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    run_all(args)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
