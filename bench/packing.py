"""Packed vs unpacked LoRA SFT throughput, through tunesmith's real training loop, on skew-length real data.

    python -m bench.packing             # fp32 and bf16, 2 interleaved repeats (~5 min on 2 cores)
    python -m bench.packing --quick     # bf16 only, 1 repeat, fewer steps (~1 min)
    python -m bench.packing --profile   # top operators of one step of each configuration

Data: Alpaca 1k (short answers) + ShareGPT tool-call 300 (long, with tool schemas): median 109 tokens, a
long tail to 2k, cut at --seq-len. Model: a random ~17M-parameter Llama (bench.common.BENCH_SHAPE) with a
byte-level BPE tokenizer trained on that data, LoRA r16 on all linear layers, model weights fp32,
`mixed_precision` "no" (fp32) or "bf16" (autocast).

Each configuration is one `train()` (build_trainer + trainer_run) in a fresh process, so peak RSS is its
own. Both modes get about the same real tokens per optimizer step (packed: --packed-batch rows of --seq-len;
unpacked: as many samples as fill that on average), so the lr schedules match and final losses compare.
Throughput comes from the run's metrics.jsonl (the loop times each step and counts non-pad tokens): total
tokens over total step time, after --warmup steps. Runs alternate A B B A ... so a machine slowing down
(these drift up to 3x in an hour) hits both modes alike; the ratio row ("p/u" = packed / unpacked) is the
median of per-repeat pair ratios. "real tok/CPU-s" divides by the CPU time of the steps (all threads)
instead of their wall time: the steadier figure when other jobs share the cores. "cores" is that CPU time
per wall second; well below the thread count means the run was competing for the machine.

Threads: one per run by default (`--threads 0` for torch's default of one per core). On this shared 2-core
machine under load (other jobs: load average 6-9), two threads made each step 3-20x slower and erratic,
one thread ran steady (within 5%); the likely cause is that each of a step's ~1,000 parallel ops waits at
a barrier for whichever thread the scheduler has parked. Packed and unpacked run the same kernels, so
their ratio should not hinge on the thread count; the absolute figures do.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import (
    SHARED_DATA,
    StepCpuClock,
    child_or_parent,
    machine_summary,
    matmul_gflops,
    peak_rss_mib,
    profile_train_step,
    run_child,
    save_bench_model,
    write_chat_data,
)
from tunesmith.data.packing import pack
from tunesmith.data.pipeline import prepare_data
from tunesmith.data.types import Sample
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import METRICS_FILE, read_metrics
from tunesmith.train.batches import BatchPlan, plan_batches
from tunesmith.train.loop import build_trainer, trainer_run

DATA_FILES = ("alpaca_1k.jsonl", "sharegpt_glaive_toolcall_300.jsonl")
MODES = ("packed", "unpacked")
PRECISION_NAMES = {"no": "fp32", "bf16": "bf16"}


def base_recipe(model_dir: Path, data_file: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The recipe both modes share; `configure` sets what differs."""
    return {
        "name": "bench-packing", "model": str(model_dir), "method": "sft", "adapter": "lora", "output": str(out),
        "data": {"train": str(data_file), "eval": args.eval_fraction, "template": "plain"},
        "train": {"lr": 1e-3, "max_steps": args.warmup + args.steps, "max_seq_len": args.seq_len, "seed": 0,
                  "batch_size": args.packed_batch, "log_every": 1},
        "model_options": {"dtype": "fp32"},
    }


def configure(base: dict[str, Any], mode: str, precision: str, batch_size: int, repeat: int) -> dict[str, Any]:
    train = {**base["train"], "packing": mode == "packed", "mixed_precision": precision, "batch_size": batch_size}
    return {**base, "name": f"packing-{mode}-{PRECISION_NAMES[precision]}-r{repeat}", "train": train}


# ---- child side: one configuration in this (fresh) process ------------------------------------------------


def child_main(payload: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration, then read its metrics.jsonl and check the loop's token accounting."""
    recipe = recipe_from_dict(payload["recipe"], source="bench recipe")
    if payload["threads"]:
        torch.set_num_threads(payload["threads"])
    if payload.get("profile"):
        trainer = build_trainer(recipe, overwrite=True)
        profile = profile_train_step(trainer, warmup=payload["warmup"], top=payload["top"])
        batches = trainer.objective.step_batches(profile["step"], trainer.model)
        slots = sum(batch["input_ids"].numel() for batch in batches)
        return {**profile, "real_tokens": trainer.objective.real_tokens(profile["step"]), "slots": slots}
    started = time.perf_counter()
    trainer = build_trainer(recipe, overwrite=True)
    clock = StepCpuClock(trainer.objective)
    trainer.objective = clock
    trainer_run(trainer)
    wall = time.perf_counter() - started
    records = read_metrics(trainer.folder.path / METRICS_FILE)
    steps = [r for r in records if "tokens_per_s" in r]
    evals = [r for r in records if "eval_loss" in r]
    plan: BatchPlan = clock.inner.plan
    accounting = check_token_accounting(plan, steps)
    timed = steps[payload["warmup"]:]
    real = [accounting["real_per_step"][r["step"] - 1] for r in timed]
    seconds = [n / r["tokens_per_s"] for n, r in zip(real, timed)]
    cpu = [clock.cpu_seconds[r["step"] - 1] for r in timed]
    # Totals over the timed steps, not medians of per-step rates: a step's trained share swings with the
    # samples in it (a tool-call sample's long system prompt is untrained), so per-step ratios are skewed.
    return {
        "real_tok_s": sum(real) / sum(seconds),
        "real_tok_cpu_s": sum(real) / sum(cpu),
        "trained_tok_s": sum(r["units"] for r in timed) / sum(seconds),
        "real_per_step": statistics.mean(real),
        "cores_used": sum(cpu) / sum(seconds),
        "pad_fraction": accounting["pad_fraction"],
        "accounting_ok": accounting["ok"],
        "accounting_note": accounting["note"],
        "peak_rss_mib": peak_rss_mib(),
        "eval_loss_start": evals[0]["eval_loss"] if evals else None,
        "eval_loss_end": evals[-1]["eval_loss"] if evals else None,
        "train_loss_end": steps[-1]["loss"],
        "timed_steps": len(timed),
        "step_seconds": sum(seconds),
        "wall_seconds": wall,
    }


def check_token_accounting(plan: BatchPlan, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Does the loop's `tokens` (the numerator of tokens_per_s) count non-pad tokens only?

    Counted independently of `BatchPlan.real_tokens`: a packed row's tokens are the sum of its samples'
    lengths; a padded batch's are its samples' lengths, which must also equal its attention mask's ones
    (never batch x longest). Also returns the share of the model's input slots that were padding.
    """
    real_per_step, problems, real_total, slots_total = [], [], 0, 0
    previous = 0
    for record in steps:
        step = record["step"] - 1
        independent = 0
        for rows, batch in zip(plan.micro_batches[step * plan.accum:(step + 1) * plan.accum], plan.step_batches(step)):
            lengths = sum(sum(r.lengths) for r in rows) if plan.packed else sum(len(s) for s in rows)
            if not plan.packed and lengths != int(batch["attention_mask"].sum()):
                problems.append(f"step {step + 1}: attention mask disagrees with the sample lengths")
            independent += lengths
            slots_total += batch["input_ids"].numel()
        logged = record["tokens"] - previous
        previous = record["tokens"]
        if logged != independent:
            problems.append(f"step {step + 1}: logged {logged} tokens, counted {independent}")
        real_per_step.append(independent)
        real_total += independent
    ok = not problems
    note = "tokens = non-pad tokens at every step" if ok else "; ".join(problems[:3])
    return {"ok": ok, "note": note, "real_per_step": real_per_step, "pad_fraction": 1 - real_total / slots_total}


# ---- parent side: prepare once, run every configuration, print the table -----------------------------------


def prepare(workdir: Path, data_dir: Path, vocab: int, kv_heads: int, seq_len: int) -> tuple[Path, Path]:
    """The mixed-length chat file and the benchmark model folder (rebuilt every time: deterministic, ~5 s)."""
    data_file, texts = write_chat_data([data_dir / name for name in DATA_FILES], workdir / "data" / "chat.jsonl")
    model_dir = save_bench_model(workdir / "model", texts, vocab_size=vocab, kv_heads=kv_heads,
                                 max_positions=seq_len)
    return data_file, model_dir


def matched_unpacked_batch(samples: list[Sample], seq_len: int, packed_batch: int) -> int:
    """Unpacked micro-batch size carrying, on average, the real tokens of `packed_batch` packed rows."""
    rows = pack(samples, seq_len)
    tokens_per_row = sum(len(r.input_ids) for r in rows) / len(rows)
    mean_sample = sum(len(s) for s in samples) / len(samples)
    return max(1, round(packed_batch * tokens_per_row / mean_sample))


def pad_fraction_by_batch(samples: list[Sample], seq_len: int, sizes: tuple[int, ...], pad_id: int) -> dict[int, float]:
    """Share of padding in one epoch of unpacked (shuffled) micro-batches, per micro-batch size."""
    out = {}
    for size in sizes:
        plan = plan_batches(samples, batch_size=size, accum=1, epochs=1, max_steps=None, max_seq_len=seq_len,
                            packing=False, pad_id=pad_id, seed=0)
        real = sum(len(s) for batch in plan.micro_batches for s in batch)
        slots = sum(len(batch) * max(len(s) for s in batch) for batch in plan.micro_batches)
        out[size] = 1 - real / slots
    return out


def run_all(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    precisions = ["bf16"] if args.quick else args.precision
    if args.threads:
        torch.set_num_threads(args.threads)  # the matmul probe then measures what the runs get
    print("machine:", json.dumps(machine_summary()))
    data_file, model_dir = prepare(workdir, Path(args.data_dir), args.vocab, args.kv_heads, args.seq_len)
    base = base_recipe(model_dir, data_file, workdir / "runs", args)
    tokenizer = load_tokenizer(str(model_dir))
    data = prepare_data(recipe_from_dict(base, source="bench recipe"), tokenizer)
    lengths = sorted(len(s) for s in data.train)
    unpacked_batch = args.unpacked_batch or matched_unpacked_batch(data.train, args.seq_len, args.packed_batch)
    print(f"data: {len(data.train)} train samples, tokens per sample median {lengths[len(lengths) // 2]}, "
          f"mean {statistics.mean(lengths):.0f}, max {lengths[-1]} (cut at {args.seq_len}; "
          f"{sum(s.truncated for s in data.train)} truncated); vocab {len(tokenizer)}, kv_heads {args.kv_heads}")
    fractions = pad_fraction_by_batch(data.train, args.seq_len, (1, 2, 4, 8, 16), tokenizer.pad_token_id)
    print("pad share of unpacked batches by micro-batch size: "
          + ", ".join(f"{size}: {share:.0%}" for size, share in fractions.items()))
    print(f"batches: packed {args.packed_batch} row(s) of <= {args.seq_len} tokens; unpacked {unpacked_batch} samples "
          f"(matched real tokens per step); {args.warmup} warm-up + {args.steps} timed steps per run")
    if args.profile:
        profile_all(args, base, precisions, unpacked_batch, workdir)
        return
    probe_start = probe()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for repeat in range(args.repeats):
        for precision in precisions:
            for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                batch = args.packed_batch if mode == "packed" else unpacked_batch
                recipe = configure(base, mode, precision, batch, repeat)
                payload = {"recipe": recipe, "warmup": args.warmup, "threads": args.threads}
                result = run_child("bench.packing", payload, workdir / f"{recipe['name']}.log")
                results.setdefault((precision, mode), []).append(result)
                print(f"  run {recipe['name']}: {result['real_tok_s']:.0f} real tok/s, "
                      f"{result['real_tok_cpu_s']:.0f} real tok/CPU-s, {result['cores_used']:.2f} cores, "
                      f"{result['wall_seconds']:.0f} s wall", flush=True)
    print(f"matmul probe GFLOP/s (fp32, bf16): start {probe_start}, end {probe()}")
    print_table(results, precisions)
    saved = workdir / "results.json"
    rows = [{"precision": precision, "mode": mode, "runs": runs} for (precision, mode), runs in results.items()]
    saved.write_text(json.dumps(rows, indent=1))
    print(f"per-run results: {saved}")


def probe() -> str:
    return f"{matmul_gflops(torch.float32):.0f}, {matmul_gflops(torch.bfloat16):.0f}"


COLUMNS = (  # (result key, header, width, format)
    ("real_per_step", "real tok/step", 13, ".0f"),
    ("pad_fraction", "pad", 5, ".0%"),
    ("real_tok_s", "real tok/s", 10, ".0f"),
    ("real_tok_cpu_s", "real tok/CPU-s", 14, ".0f"),
    ("trained_tok_s", "trained tok/s", 13, ".0f"),
    ("peak_rss_mib", "peak RSS MiB", 12, ".0f"),
    ("eval_loss_start", "eval loss start", 15, ".4f"),
    ("eval_loss_end", "eval loss end", 13, ".4f"),
    ("cores_used", "cores", 5, ".2f"),
)
RATIO_KEYS = ("real_tok_s", "real_tok_cpu_s", "trained_tok_s", "peak_rss_mib")


def print_table(results: dict[tuple[str, str], list[dict[str, Any]]], precisions: list[str]) -> None:
    header = f"{'precision':<9} {'mode':<9} " + " ".join(f"{h:>{w}}" for _, h, w, _ in COLUMNS) + "  real tok/s per run"
    print("\n" + header + "\n" + "-" * len(header))
    for precision in precisions:
        runs = {mode: results[(precision, mode)] for mode in MODES}
        for mode in MODES:
            cells = " ".join(f"{_med(runs[mode], key):>{w}{fmt}}" for key, _, w, fmt in COLUMNS)
            per_run = ", ".join(f"{r['real_tok_s']:.0f}" for r in runs[mode])
            print(f"{PRECISION_NAMES[precision]:<9} {mode:<9} {cells}  {per_run}")
        cells = " ".join(f"{_pair_ratio(runs, key):>{w - 1}.2f}x" if key in RATIO_KEYS else " " * w
                         for key, _, w, _ in COLUMNS)
        print(f"{PRECISION_NAMES[precision]:<9} {'p/u':<9} {cells.rstrip()}")
    print()
    for precision in precisions:
        starts = {mode: results[(precision, mode)][0]["eval_loss_start"] for mode in MODES}
        if None not in starts.values():
            print(f"{PRECISION_NAMES[precision]}: eval loss before training, packed {starts['packed']:.6f} vs unpacked "
                  f"{starts['unpacked']:.6f} (|diff| {abs(starts['packed'] - starts['unpacked']):.1e}: same tokens, "
                  "so packed samples are isolated)")
    notes = {r["accounting_note"] for runs in results.values() for r in runs}
    ok = all(r["accounting_ok"] for runs in results.values() for r in runs)
    print(f"token accounting ({'OK' if ok else 'MISMATCH'}): {'; '.join(sorted(notes))}")


def _med(runs: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else float("nan")


def _pair_ratio(runs: dict[str, list[dict[str, Any]]], key: str) -> float:
    """Median over repeats of packed/unpacked within the same repeat (neighbours in time)."""
    return statistics.median(p[key] / u[key] for p, u in zip(runs["packed"], runs["unpacked"]))


def profile_all(args: argparse.Namespace, base: dict[str, Any], precisions: list[str], unpacked_batch: int,
                workdir: Path) -> None:
    for precision in precisions:
        for mode in MODES:
            batch = args.packed_batch if mode == "packed" else unpacked_batch
            recipe = configure(base, mode, precision, batch, repeat=0)
            payload = {"recipe": recipe, "profile": True, "warmup": 2, "top": args.top, "threads": args.threads}
            result = run_child("bench.packing", payload, workdir / f"{recipe['name']}-profile.log")
            print(f"\ntop ops by self CPU time, {PRECISION_NAMES[precision]} {mode}, step {result['step'] + 1}: "
                  f"{result['total_ms']:.0f} ms for {result['real_tokens']} real tokens in {result['slots']} slots")
            for row in result["ops"]:
                print(f"  {row['share']:>5.1%} {row['self_ms']:>9.1f} ms {row['calls']:>6} calls  {row['op']}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.packing", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="bf16 only, 1 repeat, 2 warm-up + 8 timed steps")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one step of each configuration")
    parser.add_argument("--precision", nargs="+", choices=list(PRECISION_NAMES), default=["no", "bf16"],
                        help="mixed_precision values to compare (no = fp32)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps excluded from timing")
    parser.add_argument("--steps", type=int, default=15, help="timed optimizer steps")
    parser.add_argument("--seq-len", type=int, default=512, help="train.max_seq_len (packed row length)")
    parser.add_argument("--packed-batch", type=int, default=1, help="packed rows per micro-batch")
    parser.add_argument("--unpacked-batch", type=int, default=0, help="samples per unpacked micro-batch (0: matched)")
    parser.add_argument("--eval-fraction", type=float, default=0.01, help="held-out share for the eval loss")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--kv-heads", type=int, default=6, choices=[1, 2, 3, 6])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (0: torch's default, one per core); see the module docstring")
    parser.add_argument("--top", type=int, default=12, help="ops listed per configuration by --profile")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-packing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.steps = 1, 2, 8
    return args


def main(argv: list[str] | None = None) -> None:
    child_or_parent(parse_args(sys.argv[1:] if argv is None else argv), child_main, run_all)


if __name__ == "__main__":
    main()
