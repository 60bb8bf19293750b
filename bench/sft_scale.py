"""SFT data at a million rows: peak memory of `tunesmith validate` and of a 5-step `tunesmith train`, by row count.

    python -m bench.sft_scale                          # 10,000 and 1,000,000 rows
    python -m bench.sft_scale --rows 10000 100000

A ShareGPT file of each size is written under --workdir from the shared Alpaca rows (instruction and input
as the human turn, output as the gpt turn; each repeat numbered so rows differ: about 400 bytes a row, so
1M rows is ~0.4 GB). Then, each in a fresh process with its own data store: `validate` with an empty store
(read, parse, template, tokenize, write the store, report), and `train` for 5 steps on the stories260k model
with that store filled (seconds to the first optimizer step). Peak RSS is the child's VmHWM, "anon" the peak
of its anonymous memory alone (bench.common.AnonPeak: without the store's file pages), "workers" the
largest peak of the processes it waited for. The claim checked: memory does not grow with the row count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
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
MODES = ("validate", "train")


def write_rows(path: Path, rows: int) -> Path:
    """`rows` ShareGPT rows from the shared Alpaca file, repeated and numbered."""
    if path.is_file():
        return path
    source = [json.loads(line) for line in (SHARED_DATA / "alpaca_1k.jsonl").read_text().splitlines() if line.strip()]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        for i in range(rows):
            row = source[i % len(source)]
            human = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "") + f" (#{i})"
            out.write(json.dumps({"conversations": [{"from": "human", "value": human},
                                                    {"from": "gpt", "value": row["output"]}]}) + "\n")
    tmp.replace(path)
    return path


def _recipe(payload: dict[str, Any]) -> Path:
    path = Path(payload["workdir"]) / f"sft-{payload['rows']}.yaml"
    path.write_text(f"name: sft-scale\nmodel: {STORIES}\nmethod: sft\nadapter: lora\n"
                    f"data: {{train: {payload['data']}, eval: 0.001, template: plain}}\n"
                    "train: {max_seq_len: 256, max_steps: 5, batch_size: 4, log_every: 1}\n"
                    f"output: {Path(payload['workdir']) / 'runs'}\n")
    return path


def child(payload: dict[str, Any]) -> dict[str, Any]:
    """One command in this process: seconds (to the first optimizer step, for train) and peak memory."""
    os.environ["TUNESMITH_CACHE"] = str(Path(payload["workdir"]) / f"store-{payload['rows']}")
    if payload["mode"] == "validate":
        shutil.rmtree(os.environ["TUNESMITH_CACHE"], ignore_errors=True)
    else:
        shutil.rmtree(Path(payload["workdir"]) / "runs", ignore_errors=True)
    with AnonPeak() as anon:
        seconds = command_seconds(payload["mode"], _recipe(payload))
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "anon_mib": anon.peak_mib, "workers_mib": workers}


def parent(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    print("machine:", json.dumps(machine_summary()), flush=True)
    rows = []
    for count in args.rows:
        data = write_rows(workdir / f"sharegpt-{count}.jsonl", count)
        for mode in MODES:
            payload = {"mode": mode, "rows": count, "data": str(data), "workdir": str(workdir)}
            result = run_child("bench.sft_scale", payload, workdir / f"{count}-{mode}.log", timeout=args.timeout)
            result.update(rows=count, mode=mode, mb=data.stat().st_size / 1e6)
            rows.append(result)
            print(f"  {count} rows {mode}: {json.dumps(result)}", flush=True)
    print(f"\n{'rows':>9} {'file MB':>8} {'mode':8} {'seconds':>8} {'peak MiB':>9} {'anon MiB':>9} {'workers MiB':>11}")
    for row in rows:
        print(f"{row['rows']:>9} {row['mb']:>8.0f} {row['mode']:8} {row['seconds']:>8.1f} {row['peak_mib']:>9.0f} "
              f"{row['anon_mib']:>9.0f} {row['workers_mib']:>11.0f}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sft_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-sft-scale")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    child_or_parent(parse_args(sys.argv[1:] if argv is None else argv), child, parent)


if __name__ == "__main__":
    main()
