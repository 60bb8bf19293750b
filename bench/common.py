"""Helpers every bench script shares: the benchmark model and data, per-process memory, a machine probe,
and running one configuration in a fresh process.

Why fresh processes: peak RSS is a per-process high-water mark, so two configurations measured in one
process would report the larger peak twice; and allocator/thread-pool state left by one run would bias the
next. Why a matmul probe: these machines' speed drifts (up to 3x within an hour, other jobs share the two
cores), so a bench reports the raw GFLOP/s at its start and end to show how much the ground moved.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tunesmith.data.formats import parse_rows
from tunesmith.data.loading import load_rows
from tunesmith.data.types import Conversation
from tunesmith.errors import UserError
from tunesmith.testing.tiny import save_tiny

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
"""The real datasets beside the checkout (see shared/data/README.md); never copied into the repo."""
INVOCATION = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
"""This bench invocation's name: its run folders go under it, so a run an earlier invocation left half-written
(killed, or from an older layout) is never reused, which tunesmith refuses to do."""


def runs_folder(workdir: Path, name: str = "runs") -> Path:
    """Where this invocation's tunesmith runs go: `workdir/name/INVOCATION`."""
    return workdir / name / INVOCATION


BENCH_SHAPE: dict[str, int] = {"hidden": 384, "layers": 6, "heads": 6, "intermediate": 1024}
"""A ~17-20M-parameter Llama (with an 8k vocabulary): big enough that matmuls, not Python, dominate a
step on 2 CPU cores, small enough that a 20-step run takes well under a minute."""

RESULT_MARK = "BENCH_RESULT "
"""Prefix of the one stdout line through which a child process hands its result back."""


def write_chat_data(sources: list[Path], out: Path) -> tuple[Path, list[str]]:
    """Parse `sources` (any formats tunesmith reads) and write them as one OpenAI-messages JSONL file.

    One file in one format, because a recipe's auto-detection picks one format per dataset and the bench
    mixes Alpaca (short) with ShareGPT tool calls (long): that mix is what makes lengths skewed. Returns
    the file and every message text (to train a tokenizer on the same data).
    """
    rows, texts = [], []
    for source in sources:
        if not source.is_file():
            raise UserError(f"bench data file not found: {source}; pass --data-dir with the shared datasets")
        for example in parse_rows(load_rows(str(source))).examples:
            if not isinstance(example, Conversation):
                raise UserError(f"{source}: bench data must be conversations, got {type(example).__name__}")
            messages = [{"role": m.role, "content": m.content} for m in example.messages]
            rows.append(json.dumps({"messages": messages}, ensure_ascii=False))
            texts += [m["content"] for m in messages]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    return out, texts


def save_bench_model(out: Path, texts: list[str], vocab_size: int = 8000, kv_heads: int = 6,
                     max_positions: int = 512, seed: int = 0) -> Path:
    """The benchmark Llama (BENCH_SHAPE, random weights) with a byte-level BPE tokenizer trained on `texts`.

    The embedding size is the tokenizer's real size, so they always match. `kv_heads=2` gives the
    grouped-query variant.
    """
    return save_tiny("llama", out, vocab_size=vocab_size, seed=seed, texts=texts, kv_heads=kv_heads,
                     max_positions=max_positions, **BENCH_SHAPE)


def _status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmHWM, VmRSS) in MiB; None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (VmHWM; ru_maxrss where /proc is missing), in MiB."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib() -> float:
    """This process's resident memory now (VmRSS), in MiB; 0 where /proc is missing."""
    return _status_mib("VmRSS") or 0.0


class AnonPeak:
    """The peak of this process's anonymous resident memory (RssAnon: heap, tensors, Python objects), sampled
    every `interval` seconds by a thread while the `with` block runs.

    Why beside VmHWM: RSS also counts the file pages of every mapped or freshly written file, which the kernel
    reclaims under pressure; a store written and mapped in pieces shows up in VmHWM although the process holds
    none of it. RssAnon is the memory that would have to fit. A sampler misses spikes shorter than `interval`.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak_mib = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_mib = max(self.peak_mib, _status_mib("RssAnon") or 0.0)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, _status_mib("RssAnon") or 0.0)


def cuda_sync() -> None:
    """Wait for the GPU's queued work, so a wall-clock stamp taken next covers it; a no-op without CUDA."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_memory_mib() -> dict[str, float] | None:
    """This process's peak GPU memory in MiB: tensors (`max_memory_allocated`) and the caching allocator's
    hold (`max_memory_reserved`, what another process could not use); None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return {"allocated": torch.cuda.max_memory_allocated() / 2**20, "reserved": torch.cuda.max_memory_reserved() / 2**20}


def trainable_checksum(model: torch.nn.Module) -> list[float]:
    """Count and sum of squares of the trainable weights: equal at step 0 means the same initialisation."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [float(sum(p.numel() for p in params)), float(sum(p.detach().double().pow(2).sum() for p in params))]


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.5) -> float:
    """Sustained GFLOP/s of an n x n matmul in `dtype` right now: the ceiling a training step can approach."""
    return peak_matmul_gflops(dtype, [(n, n, n)], seconds)


def peak_matmul_gflops(dtype: torch.dtype, shapes: list[tuple[int, int, int]], seconds: float = 0.3) -> float:
    """The best GFLOP/s of (m x k) @ (k x n) matmuls over `shapes`: one square probe plus a model's own
    layer shapes, because the fastest kernel for one shape is not the fastest for another, and MFU must
    be measured against the best the machine showed, not a shape that happens to be slow."""
    best = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(2):
            a @ b
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - start) / 1e9)
    return best


def machine_summary() -> dict[str, str]:
    """What a result needs to be read against: cores, CPU model, torch and its thread count, current load."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()),
        "cpu": model,
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "load_avg_1m": f"{os.getloadavg()[0]:.2f}",
    }


def child_main(run: Callable[[dict[str, Any]], dict[str, Any]], description: str) -> None:
    """The `python -m bench.X --child JSON` entry point of a child process: run the payload, emit the result."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--child", required=True, help="JSON payload from the parent bench")
    emit_result(run(json.loads(parser.parse_args().child)))


def child_or_parent(args: argparse.Namespace, child: Callable[[dict[str, Any]], dict[str, Any]],
                    parent: Callable[[argparse.Namespace], Any]) -> Any:
    """A bench module is both the parent that prints the table and the child (`--child JSON`) that measures
    one configuration in a fresh process: run the side `args` asks for (the child emits its result; the parent
    ends with its wall time)."""
    if args.child:
        emit_result(child(json.loads(args.child)))
        return None
    started = time.perf_counter()
    try:
        return parent(args)
    finally:
        print(f"total {time.perf_counter() - started:.0f} s")


def emit_result(result: dict[str, Any]) -> None:
    """Child side of `run_child`: print the result as the marked last line of stdout."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def run_child(module: str, payload: dict[str, Any], log: Path, timeout: float = 900.0) -> dict[str, Any]:
    """Run `python -m module --child JSON` in a fresh process from the repo root and return its result.

    The child's stderr (progress bars, warnings) goes to `log`; a failure raises with the log's tail, so a
    broken configuration says why instead of printing an empty row.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", module, "--child", json.dumps(payload)]
    with log.open("w") as err:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
                              timeout=timeout, check=False)
    marked = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode != 0 or not marked:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RuntimeError(f"bench child {module} failed (exit {done.returncode}); log {log}:\n{tail}")
    return json.loads(marked[-1][len(RESULT_MARK):])


def profile_train_step(trainer: Any, warmup: int = 2, top: int = 12) -> dict[str, Any]:
    """Where one optimizer step's CPU time goes: the `top` operators by self time, after `warmup` steps.

    It runs the loop's own step function (`loop._train_step`), so what is profiled is exactly what
    `train()` executes: collation, forward, loss, backward, clipping, optimizer. Returns the step index,
    the step's total self milliseconds, and rows of op name, calls, self milliseconds and share.
    """
    from tunesmith.train.loop import _train_step  # the real step, not a re-implementation of it

    for step in range(warmup):
        _train_step(trainer, step)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _train_step(trainer, warmup)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    ops = [{"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total} for e in ranked]
    return {"step": warmup, "total_ms": total / 1e3, "ops": ops}


class StepCpuClock:
    """Wraps a training Objective and records the process CPU seconds of every optimizer step.

    The loop calls `step_batches(step)` first thing in a step and `real_tokens(step)` after the optimizer
    update, so the CPU time between them is the step the loop times in wall seconds. On a shared machine
    wall time swings with other jobs; CPU time (all threads of this process) mostly does not, so
    tokens per CPU-second is the steadier cost figure. Everything else is delegated unchanged.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cpu_seconds: dict[int, float] = {}
        self._started: dict[int, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def step_batches(self, step: int, model: torch.nn.Module) -> Any:
        self._started[step] = time.process_time()
        return self.inner.step_batches(step, model)

    def real_tokens(self, step: int) -> int:
        tokens = self.inner.real_tokens(step)
        self.cpu_seconds[step] = time.process_time() - self._started[step]
        return tokens


def command_seconds(verb: str, recipe: Path) -> float:
    """`tunesmith VERB RECIPE` in this process: its seconds, or for `train` the seconds to its first optimizer
    step (the first metrics record), which is what a user waits for before training starts."""
    from tunesmith.cli import app
    from tunesmith.train import loop

    first_step: list[float] = []
    log = loop._log

    def stamped(trainer: Any, record: dict[str, Any]) -> None:
        first_step.append(first_step[0] if first_step else time.perf_counter())
        log(trainer, record)

    loop._log = stamped
    started = time.perf_counter()
    try:
        app([verb, str(recipe)], standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            raise
    finally:
        loop._log = log
    return (first_step[0] if verb == "train" else time.perf_counter()) - started
