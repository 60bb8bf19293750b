"""OpenMP's wait policy on a CPU shared with other work: `PASSIVE` (what `tunesmith` sets) against the others.

    python -m bench.omp_wait [--steps 20] [--rounds 2] [--busy 2] [--policies default ACTIVE PASSIVE]

torch's CPU kernels run on an OpenMP thread pool whose idle threads, by default, spin between parallel
regions. On a machine whose cores other processes also want (a laptop, a shared server, CI, several
tunesmith workers on few cores), a spinning thread holds a core the working thread needs, and every small op
waits for a descheduled peer at its barrier. The `tunesmith` command therefore sets `OMP_WAIT_POLICY=PASSIVE`
unless the user set it. This bench trains the same run (stories260k, CPT, full fine-tuning, batch 8 x 256,
2 threads) in fresh processes under each policy, alternating, first on the otherwise idle machine and then
beside `--busy` processes that each spin on a core: tokens per second of the steps after the first two.
"default" is no OMP_WAIT_POLICY at all (libgomp then spins a while before it sleeps), what torch does unless
told otherwise; the last policy listed is compared with the first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULT_MARK, SHARED_DATA, machine_summary, runs_folder

STORIES = REPO.parent / "shared" / "fixtures" / "stories260k"
POLICIES = ("default", "ACTIVE", "PASSIVE")


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10_000))


def payload(workdir: Path, steps: int, name: str) -> dict[str, Any]:
    """The throughput child's input: a CPT run of the real stories260k model on TinyStories."""
    recipe = {"name": name, "model": str(STORIES), "method": "cpt", "adapter": "full",
              "output": str(runs_folder(workdir)),
              "data": {"train": str(SHARED_DATA / "tinystories_train_first1000.txt"), "eval": 0.0},
              "train": {"lr": 1e-3, "max_steps": steps, "batch_size": 8, "max_seq_len": 256, "seed": 0}}
    return {"recipe": recipe, "threads": 2}


def run_policy(policy: str, data: dict[str, Any], log: Path) -> float:
    """Tokens per second of one fresh training process under `policy` (steps after the first two)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, "-m", "bench.throughput_tunesmith", "--child", json.dumps(data)]
    with log.open("w") as err:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    marked = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not marked:
        raise RuntimeError(f"{policy}: child failed (exit {done.returncode}), log {log}")
    steps = json.loads(marked[-1][len(RESULT_MARK):])["steps"][2:]
    return sum(s["real"] for s in steps[1:]) / (steps[-1]["wall"] - steps[0]["wall"])


def measure(args: argparse.Namespace, busy: int) -> dict[str, list[float]]:
    """Both policies, alternating, `args.rounds` times each, beside `busy` spinning processes."""
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for spinner in spinners:
        spinner.start()
    speeds: dict[str, list[float]] = {p: [] for p in args.policies}
    try:
        for r in range(args.rounds):
            for policy in args.policies:
                data = payload(args.workdir, args.steps, f"omp-{policy}-{busy}-{r}")
                speeds[policy].append(run_policy(policy, data, args.workdir / f"{policy}-{busy}-{r}.log"))
                print(f"  busy {busy} round {r} {policy:7s} {speeds[policy][-1]:8.0f} tok/s", flush=True)
    finally:
        stop.set()
        for spinner in spinners:
            spinner.join()
    return speeds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside the loaded measurement")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tunesmith-bench-omp"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {json.dumps(machine_summary())}; load average at start {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    for busy in (0, args.busy):
        speeds = measure(args, busy)
        medians = {p: statistics.median(speeds[p]) for p in args.policies}
        first, last = args.policies[0], args.policies[-1]
        print(f"busy {busy}: " + ", ".join(f"{p} {v:.0f} tok/s" for p, v in medians.items())
              + f"; {last} / {first} {medians[last] / medians[first]:.2f}x (medians of {args.rounds})", flush=True)
    print(f"{time.perf_counter() - started:.0f} s; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
