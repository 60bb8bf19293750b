"""tunesmith's own training throughput at two commits of this repository, interleaved in one run.

    python -m bench.throughput_commits OLD_TREE [NEW_TREE] [--rounds 2]

Where the TRL baselines of bench/throughput.py cannot be run like for like (a machine without bf16 matmuls
makes TRL-tuned's bf16 model and TRL-literal's long rows many times slower than where the ratios were first
measured), a refactor's "same speed" is shown directly: the same payload (20M LoRA, packed rows of 512, the
bench's model and data, built once) trained by `bench.throughput_tunesmith` from each tree, alternating
old/new so that the machine's drift falls on both. OLD_TREE is a checkout (e.g. `git worktree add`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULT_MARK, SHARED_DATA, machine_summary, runs_folder
from bench.throughput import build_inputs, summarize, tunesmith_payload

REPO = Path(__file__).resolve().parents[1]


def run_in(tree: Path, payload: dict[str, Any], log: Path) -> dict[str, Any]:
    """One `bench.throughput_tunesmith` child with `tree` first on the path (its code, this payload)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "bench.throughput_tunesmith", "--child", json.dumps(payload)]
    with log.open("w") as err:
        done = subprocess.run(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    marked = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not marked:
        raise RuntimeError(f"{tree}: child failed (exit {done.returncode}), log {log}")
    return json.loads(marked[-1][len(RESULT_MARK):])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=REPO)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tunesmith-bench-commits"))
    args = parser.parse_args(argv)
    settings = argparse.Namespace(lr={"lora": 2e-4}, warmup=2, steps=5, batch=4, seq_len=512, threads=2,
                                  workdir=args.workdir)
    args.workdir.mkdir(parents=True, exist_ok=True)
    inputs = build_inputs(args.workdir, SHARED_DATA, ["20M"], 512)["20M"]
    payload = tunesmith_payload(inputs, "lora", settings)
    print(f"machine: {json.dumps(machine_summary())}")
    speeds: dict[str, list[float]] = {"old": [], "new": []}
    per_cpu: dict[str, list[float]] = {"old": [], "new": []}
    losses: dict[str, set[float]] = {"old": set(), "new": set()}
    for r in range(args.rounds):
        for side, tree in (("old", args.old), ("new", args.new)):
            own = {**payload, "recipe": {**payload["recipe"], "output": str(runs_folder(args.workdir, f"runs-{side}-{r}"))}}
            result = summarize(run_in(tree.resolve(), own, args.workdir / f"{side}-{r}.log"), settings.warmup,
                               inputs["shape"], "lora")
            speeds[side].append(result["real_tps"])
            per_cpu[side].append(result["real_cpu"])
            losses[side].add(round(result["loss"], 6))
            print(f"  round {r} {side}: {result['real_tps']:.0f} real tok/s, {result['real_cpu']:.0f} per CPU-s, peak RSS {result['rss_peak']:.0f} MiB, "
                  f"loss {result['loss']:.6f}", flush=True)
    old, new = statistics.median(speeds["old"]), statistics.median(speeds["new"])
    cpu_ratio = statistics.median(per_cpu["new"]) / statistics.median(per_cpu["old"])
    print(f"new / old (medians of {args.rounds}): real tok/s {new / old:.3f}x, real tok per CPU-s {cpu_ratio:.3f}x "
          "(less sensitive to other jobs on the machine); "
          f"final losses old {sorted(losses['old'])}, new {sorted(losses['new'])}")


if __name__ == "__main__":
    main()
