"""tunesmith vs TRL `SFTTrainer` on one GPU at the Llama-3-8B shape: LoRA and QLoRA, seq 2048, packed.

    pip install flash-attn --no-build-isolation liger-kernel     # once, on the GPU machine
    python -m bench.gpu_throughput                                 # both adapters, within --budget (460 s)
    python -m bench.gpu_throughput --only lora --layers 8          # smaller and faster
    python -m bench.gpu_throughput --dry-run                       # tiny shape on CPU: checks the script itself

Both systems train the same random-weight model (Llama-3-8B config: hidden 4096, 32 layers, 32 heads, 8 KV
heads, MLP 14336, vocabulary 128,256; bf16) on the same tokens with the same batch, length, learning rate
and LoRA settings (r16, alpha 32, dropout 0.05, all linear layers; QLoRA: NF4 base, double quantization):

* tunesmith: `tunesmith train`'s own `build_trainer` and step function, with
  `model_options.attn_implementation: flash_attention_2` and `model_options.kernels: liger`;
* TRL tuned: `SFTConfig(packing=True, bf16=True, use_liger_kernel=True)`, flash-attention 2 through
  `model_init_kwargs`, its padding-free best-fit packing; fed tunesmith's tokenization of the data.

Gradient checkpointing is off on both sides (`--grad-ckpt` turns it on for both). Every configuration runs
in a fresh process with a timeout, so its peak GPU memory is its own; the script as a whole keeps to
`--budget` seconds and skips what no longer fits. MFU divides model FLOPs (bench/flops.py: padding and
untrained head positions are not credited) by the bf16 matmul peak this device showed, and also by the
nominal H200 bf16 dense peak. `--dry-run` is the same code path on CPU at 2 layers x 64 dims, seq 128,
sdpa attention and no Liger: it tests the script, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import machine_summary, run_child
from bench.flops import model_shape
from bench.gpu_inputs import DRY_SHAPE, LLAMA3_8B, save_model, tokens_for_trl, training_chat
from bench.gpu_report import print_ratios, print_results, summarize

H200_BF16_DENSE_TFLOPS = 989.0
"""NVIDIA's nominal H200 SXM bf16 dense (no sparsity) peak."""
ADAPTERS = ("lora", "qlora")
SYSTEMS = ("tunesmith", "trl")
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
LR = 2e-4
MIN_CHILD_SECONDS = 20.0
"""A configuration is skipped when less of the budget than this is left: it could not even load."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps after the warm-up (default 5; dry run 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 2; dry run 1)")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers, to shrink the model (default 32)")
    parser.add_argument("--only", choices=ADAPTERS, default=None, help="run one adapter instead of both")
    parser.add_argument("--dry-run", action="store_true", help="tiny shape on CPU, sdpa, no Liger: tests the script")
    parser.add_argument("--batch", type=int, default=None, help="packed rows per step (default 4; dry run 2)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per packed row (default 2048; dry run 128)")
    parser.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing on both sides")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per configuration before it is killed")
    parser.add_argument("--budget", type=float, default=460.0, help="seconds for the whole script")
    parser.add_argument("--data-dir", default=None, help="use the real Alpaca + ShareGPT files in this folder")
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-gpu")
    args = parser.parse_args(argv)
    dry = args.dry_run
    defaults = {"steps": 2 if dry else 5, "warmup": 1 if dry else 2, "batch": 2 if dry else 4,
                "seq_len": 128 if dry else 2048}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.steps, args.batch, args.seq_len) < 1 or args.warmup < 0 or (args.layers is not None and args.layers < 1):
        parser.error("--steps, --batch, --seq-len and --layers must be at least 1, --warmup at least 0")
    args.workdir = Path(args.workdir) / ("dry" if dry else "gpu")
    args.device = "cpu" if dry else "cuda"
    args.shape = {**(DRY_SHAPE if dry else LLAMA3_8B)}
    if args.layers is not None:
        args.shape["layers"] = args.layers
    return args


def device_problem(args: argparse.Namespace) -> str | None:
    """Why the full run cannot start here (no GPU, or flash-attn / liger-kernel missing), or None."""
    if args.dry_run:
        return None
    if not torch.cuda.is_available():
        return "no CUDA GPU here; run with --dry-run to check the script on CPU"
    missing = [package for module, package in (("flash_attn", "flash-attn"), ("liger_kernel", "liger-kernel"))
               if not _importable(module)]
    if missing:
        return f"missing {', '.join(missing)}: pip install flash-attn --no-build-isolation liger-kernel"
    return None


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def peak_tflops(device: str, shapes: list[tuple[int, int, int]], seconds: float) -> float:
    """The best bf16 TFLOP/s of (m x k) @ (k x n) matmuls over `shapes` on `device` right now: a square probe
    plus the model's own layer shapes, because MFU must be read against what the device can really do."""
    best = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, dtype=torch.bfloat16, device=device)
        b = torch.randn(k, n, dtype=torch.bfloat16, device=device)
        for _ in range(3):
            a @ b
        _sync(device)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(10):
                a @ b
            count += 10
            _sync(device)
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - start) / 1e12)
        del a, b
    if device == "cuda":
        torch.cuda.empty_cache()
    return best


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def tunesmith_payload(args: argparse.Namespace, inputs: dict[str, Any], adapter: str) -> dict[str, Any]:
    fast = {"attn_implementation": "sdpa", "kernels": "none"} if args.dry_run else \
        {"attn_implementation": "flash_attention_2", "kernels": "liger"}
    recipe = {"name": f"gpu-{adapter}", "model": inputs["model"], "method": "sft", "adapter": adapter,
              "output": str(args.workdir / "runs"), "data": {"train": inputs["chat"], "template": "plain"},
              "train": {"lr": LR, "max_steps": args.warmup + args.steps, "batch_size": args.batch,
                        "max_seq_len": args.seq_len, "seed": 0, "packing": True, "mixed_precision": "bf16",
                        "gradient_checkpointing": args.grad_ckpt},
              "model_options": {"dtype": "bf16", **fast}, "adapter_args": {**LORA}}
    return {"recipe": recipe, "threads": args.threads}


def trl_payload(args: argparse.Namespace, inputs: dict[str, Any], adapter: str) -> dict[str, Any]:
    init = {"dtype": "bfloat16", "attn_implementation": "sdpa" if args.dry_run else "flash_attention_2"}
    config = {"max_steps": args.warmup + args.steps, "per_device_train_batch_size": args.batch, "learning_rate": LR,
              "max_length": args.seq_len, "seed": 0, "packing": True, "bf16": True,
              "gradient_checkpointing": args.grad_ckpt, "use_liger_kernel": not args.dry_run, "model_init_kwargs": init}
    lora = {"r": LORA["r"], "lora_alpha": LORA["alpha"], "lora_dropout": LORA["dropout"]}
    return {"model": inputs["model"], "dataset": inputs["tokens"], "adapter": adapter, "config": config, "lora": lora,
            "output": str(args.workdir / "trl-out"), "threads": args.threads, "use_cpu": args.dry_run}


def run_configuration(args: argparse.Namespace, inputs: dict[str, Any], adapter: str, system: str,
                      deadline: float) -> dict[str, Any]:
    """One fresh-process run; a failure, timeout or skip comes back as {"error": why}, so the rest still run."""
    left = deadline - time.time()
    if left < MIN_CHILD_SECONDS:
        return {"error": f"skipped: {left:.0f} s of --budget left"}
    log = args.workdir / "logs" / f"{adapter}-{system}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    module, payload = (("bench.throughput_tunesmith", tunesmith_payload(args, inputs, adapter)) if system == "tunesmith"
                       else ("bench.throughput_trl", trl_payload(args, inputs, adapter)))
    started = time.time()
    try:
        result = run_child(module, payload, log, timeout=min(args.timeout, left))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {time.time() - started:.0f} s (log {log})"}
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return {"error": f"failed (log {log})"}
    return summarize(result, args.warmup, inputs["flops"], adapter, time.time() - started)


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Model folder, data, TRL's copy of the tokens, and the FLOP counter; prints what they are."""
    needed = (args.warmup + args.steps) * args.batch * args.seq_len
    samples = max(64, math.ceil(3 * needed / (args.seq_len / 6)))  # ~seq_len/6 tokens a sample: 3x what is trained
    chat, texts, what = training_chat(args.workdir, args.data_dir, samples, args.seq_len)
    s = args.shape
    model = save_model(args.workdir / f"llama-{s['hidden']}x{s['layers']}", s, texts, args.seq_len, args.device)
    tokens = tokens_for_trl(model, chat, args.seq_len, args.workdir / "data" / "tokens.jsonl")
    flops = model_shape(str(model), LORA["r"])
    print(f"model: Llama, hidden {s['hidden']}, {s['layers']} layers, {s['heads']} heads ({s['kv_heads']} KV), MLP "
          f"{s['intermediate']}, vocabulary {s['vocab']}: {flops.total / 1e9:.3f}B parameters (body linear "
          f"{flops.body_linear / 1e9:.3f}B, head {flops.head / 1e6:.1f}M, LoRA r{LORA['r']} {flops.lora / 1e6:.1f}M); "
          f"bf16 random weights")
    print(f"data: {what}; {tokens['samples']} train samples, {tokens['total']} tokens, median {tokens['median']}, "
          f"{tokens['cut']} cut at {args.seq_len}")
    if tokens["total"] < needed:
        print(f"note: {tokens['total']} tokens for {needed} per run: later steps repeat the data (more epochs)")
    return {"model": str(model), "chat": str(chat), "tokens": tokens["tokens"], "flops": flops}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = device_problem(args)
    if problem:
        print(f"bench.gpu_throughput: {problem}", file=sys.stderr)
        return 2
    started = time.time()
    deadline = started + args.budget
    args.threads = 1 if args.dry_run else torch.get_num_threads()
    machine = machine_summary()
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    print(f"{'DRY RUN (CPU, tiny shape, sdpa, no Liger): figures test the script only; ' if args.dry_run else ''}"
          f"machine: {machine}")
    inputs = prepare(args)
    tokens = args.batch * args.seq_len
    s = args.shape
    sizes = [(4096, 4096, 4096)] if args.device == "cuda" else [(256, 256, 256)]
    sizes += [(tokens, s["hidden"], s["intermediate"]), (tokens, s["intermediate"], s["hidden"])]
    peak = peak_tflops(args.device, sizes, 0.5 if args.device == "cuda" else 0.05)
    print(f"bf16 matmul peak measured: {peak:.4g} TFLOP/s (best of {len(sizes)} shapes); nominal H200 bf16 dense: "
          f"{H200_BF16_DENSE_TFLOPS:.0f} TFLOP/s")
    print(f"each run: {args.batch} packed rows x {args.seq_len} tokens, {args.warmup} warm-up + {args.steps} timed "
          f"steps, lr {LR}, LoRA {LORA}, gradient checkpointing {'on' if args.grad_ckpt else 'off'}; prepared in "
          f"{time.time() - started:.0f} s", flush=True)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for adapter in [args.only] if args.only else ADAPTERS:
        for system in SYSTEMS:
            results[adapter, system] = row = run_configuration(args, inputs, adapter, system, deadline)
            figure = row["error"] if "error" in row else f"{row['real_tps']:.0f} real tok/s, {row['wall']:.0f} s in all"
            print(f"  run {adapter}-{system}: {figure}", flush=True)
    nominal = H200_BF16_DENSE_TFLOPS if args.device == "cuda" else None
    print_results(results, peak, nominal)
    print_ratios(results)
    print(f"\ntotal {time.time() - started:.0f} s")
    return 1 if any("error" in row for row in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
