"""Data preparation at scale: tunesmith's store against the fast tokenizer's own ceiling and `datasets.map`.

    python -m bench.data_scale                       # 10 MB and 100 MB, stories260k tokenizer
    python -m bench.data_scale --sizes 10 --tokenizers stories260k smollm2
    python -m bench.data_scale --sizes 10 100 1000   # 1 GB: ~15 min a row on 2 cores, ~3 GB of /tmp

A raw-text corpus of each size is written under --workdir from the shared TinyStories files (their lines
repeated, each repeat numbered so lines differ), then, each in a fresh process, in this order:

* raw:      the fast tokenizer's batch call (`tokenizer(lines)`, 1,000 lines a call) with its thread pool on
            every core: the ceiling for tokenizing this text; the corpus is read first, outside the timing;
* datasets: `datasets.load_dataset("text")` + `.map(tokenize, batched=True, num_proc=cores)`, the timing
            covering load and map (the Arrow cache goes to a fresh folder);
* cold:     `tunesmith validate` on a CPT recipe with an empty data store: read, parse, split, tokenize,
            write the store, print the report;
* warm:     the same again: the store is read back (the hit every later validate/train/eval gets);
* train:    `tunesmith train` for 5 steps on the stories260k model with the store filled: seconds from the
            command's start to its first optimizer step (the first record of metrics.jsonl).

MB/s is the corpus's bytes over the timed seconds. Peak RSS is the child's own VmHWM, "anon" the peak of
its anonymous memory alone (bench.common.AnonPeak: RSS without the file pages of the store it writes and maps); "workers" is the
largest peak of any process it waited for (tunesmith's tokenizing workers, datasets' map processes; a
forked process's peak counts the pages it shares with its parent; the raw rows, which start no worker,
still show ~240 MiB there, from some process run while importing). The SmolLM2 tokenizer is read from the GGUF
fixture, converted once into --workdir by the first SmolLM2 child (its peak includes that). On a shared
machine wall time swings with other jobs: compare rows of one invocation only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    SHARED_DATA,
    AnonPeak,
    child_or_parent,
    command_seconds,
    machine_summary,
    peak_rss_mib,
    run_child,
)

STORIES = REPO.parent / "shared" / "fixtures" / "stories260k"
SMOLLM2 = REPO.parent / "shared" / "fixtures" / "smollm2-135m-instruct"
MODES = ("raw", "datasets", "cold", "warm", "train")
SOURCES = ("tinystories_train_first1000.txt", "tinystories_valid_head.txt")


def write_corpus(path: Path, megabytes: int) -> Path:
    """`megabytes` MB of TinyStories lines, each repeat of the source numbered so no two lines are equal."""
    if path.is_file() and path.stat().st_size >= megabytes * 1_000_000:
        return path
    lines = [line for name in SOURCES for line in (SHARED_DATA / name).read_bytes().split(b"\n") if line.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    written, i = 0, 0
    with path.open("wb") as out:
        while written < megabytes * 1_000_000:
            line = lines[i % len(lines)] + b" %d\n" % (i // len(lines))
            out.write(line)
            written += len(line)
            i += 1
    return path


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _tokenizer(name: str, workdir: str) -> Any:
    from tunesmith.models.load import load_tokenizer

    return load_tokenizer(_model(name, workdir))


def _model(name: str, workdir: str) -> str:
    if name == "stories260k":
        return str(STORIES)
    from tunesmith.gguf.source import converted_folder

    [gguf] = sorted(SMOLLM2.glob("*.gguf"))
    return str(converted_folder(gguf, Path(workdir) / "gguf-cache"))


def _raw(payload: dict[str, Any]) -> float:
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    tokenizer = _tokenizer(payload["tokenizer"], payload["workdir"])
    lines = [line for line in Path(payload["corpus"]).read_text().split("\n") if line.strip()]
    started = time.perf_counter()
    for start in range(0, len(lines), 1000):
        tokenizer(lines[start:start + 1000], verbose=False)
    return time.perf_counter() - started


def _datasets(payload: dict[str, Any]) -> float:
    import datasets

    datasets.disable_progress_bars()
    tokenizer = _tokenizer(payload["tokenizer"], payload["workdir"])
    cache = Path(payload["workdir"]) / "hf-cache"
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    data = datasets.load_dataset("text", data_files=payload["corpus"], split="train", cache_dir=str(cache))
    data = data.filter(lambda batch: [bool(t.strip()) for t in batch["text"]], batched=True, num_proc=_cores())
    data.map(lambda batch: tokenizer(batch["text"], verbose=False), batched=True, num_proc=_cores(),
             remove_columns=["text"])
    seconds = time.perf_counter() - started
    shutil.rmtree(cache, ignore_errors=True)
    return seconds


def _recipe(payload: dict[str, Any]) -> Path:
    path = Path(payload["workdir"]) / f"cpt-{payload['tokenizer']}.yaml"
    model = _model(payload["tokenizer"], payload["workdir"])
    path.write_text(f"name: scale\nmodel: {model}\nmethod: cpt\nadapter: full\n"
                    f"data: {{train: {payload['corpus']}, eval: {payload['eval']}}}\n"
                    "train: {max_seq_len: 256, max_steps: 5, batch_size: 4, log_every: 1}\n"
                    f"output: {Path(payload['workdir']) / 'runs'}\n")
    return path


def _tunesmith(payload: dict[str, Any]) -> float:
    """`tunesmith validate` (or `train`: seconds to the first optimizer step's record) in this process."""
    return command_seconds("train" if payload["mode"] == "train" else "validate", _recipe(payload))


def child(payload: dict[str, Any]) -> dict[str, Any]:
    os.environ["TUNESMITH_CACHE"] = str(Path(payload["workdir"]) / f"store-{payload['tokenizer']}")
    mode = payload["mode"]
    if mode == "cold":
        shutil.rmtree(os.environ["TUNESMITH_CACHE"], ignore_errors=True)
    if mode == "train":
        shutil.rmtree(Path(payload["workdir"]) / "runs", ignore_errors=True)
    with AnonPeak() as anon:
        seconds = {"raw": _raw, "datasets": _datasets}.get(mode, _tunesmith)(payload)
    store = Path(os.environ["TUNESMITH_CACHE"]) / "data"
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) if store.is_dir() else 0
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "anon_mib": anon.peak_mib, "workers_mib": workers,
            "store_mb": size / 1e6}


def parent(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    print("machine:", json.dumps(machine_summary()), flush=True)
    rows = []
    for megabytes in args.sizes:
        corpus = write_corpus(workdir / f"corpus-{megabytes}MB.txt", megabytes)
        for tokenizer in args.tokenizers:
            for mode in args.modes:
                if mode == "train" and tokenizer != "stories260k":
                    continue  # 5 steps of the 135M model would measure the model, not the data path
                payload = {"mode": mode, "corpus": str(corpus), "tokenizer": tokenizer, "workdir": str(workdir),
                           "eval": args.eval}
                result = run_child("bench.data_scale", payload, workdir / f"{megabytes}-{tokenizer}-{mode}.log",
                                   timeout=args.timeout)
                result.update(mb=corpus.stat().st_size / 1e6, tokenizer=tokenizer, mode=mode)
                rows.append(result)
                print(f"  {megabytes} MB {tokenizer} {mode}: {json.dumps(result)}", flush=True)
        if not args.keep:
            corpus.unlink()
    print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"\n{'corpus':>7} {'tokenizer':11} {'mode':8} {'seconds':>8} {'MB/s':>6} {'peak MiB':>9} {'anon MiB':>9} "
          f"{'workers MiB':>11} {'store MB':>9}  vs raw  vs datasets")
    for row in rows:
        same = {r["mode"]: r for r in rows if r["mb"] == row["mb"] and r["tokenizer"] == row["tokenizer"]}
        rate = row["mb"] / row["seconds"]
        ratios = "".join(f"  {same[ref]['seconds'] / row['seconds']:>6.2f}x" if ref in same else "  " + " " * 7
                         for ref in ("raw", "datasets"))
        print(f"{row['mb']:>6.0f}M {row['tokenizer']:11} {row['mode']:8} {row['seconds']:>8.1f} {rate:>6.2f} "
              f"{row['peak_mib']:>9.0f} {row['anon_mib']:>9.0f} {row['workers_mib']:>11.0f} {store_column(row):>9}{ratios}")
    print("vs raw / vs datasets: that row's speed as a multiple of the reference's (above 1: faster)")


def store_column(row: dict[str, Any]) -> str:
    """The store's size, for the tunesmith rows only (the references write none)."""
    return f"{row['store_mb']:.1f}" if row["mode"] in ("cold", "warm", "train") else "-"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.data_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], help="corpus sizes in MB")
    parser.add_argument("--tokenizers", nargs="+", default=["stories260k"], choices=["stories260k", "smollm2"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--eval", default="0.001", help="the recipe's data.eval: a held-out fraction or a file")
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-data-scale")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--keep", action="store_true", help="keep the corpora (they are regenerated otherwise)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    child_or_parent(parse_args(sys.argv[1:] if argv is None else argv), child, parent)


if __name__ == "__main__":
    main()
