"""tunesmith vs TRL SFTTrainer, side by side: throughput, MFU, peak memory and loss parity.

    python -m bench.throughput            # 20M and 60M Llama, LoRA and full, 2 interleaved repeats (<20 min, 2 cores)
    python -m bench.throughput --quick    # 20M LoRA only, 1 repeat, no parity (~2 min)

Three systems train the same random Llama on the same tokens (Alpaca 1k + ShareGPT tool calls: real,
skewed lengths) with the same batch size, sequence length, learning rate and LoRA settings:

* tunesmith with its defaults (packing, `dtype: auto`, `mixed_precision: auto`);
* TRL literal defaults: `SFTConfig` as shipped (bf16 autocast, gradient checkpointing, padded batches, fp32
  weights), plus `use_cpu=True`, which it demands on a machine without a GPU;
* TRL tuned: what a careful user sets on this machine: `packing=True` (best-fit, padding-free),
  gradient checkpointing off, and bf16 where the CPU has bf16 instructions (frozen LoRA base loaded in
  bf16); on a CPU without them bf16 matmuls are emulated, over 100x slower than fp32, so tuned runs fp32;
* for LoRA also tunesmith with `train.gradient_checkpointing: true` ("tunesmith-ckpt"), to show what the
  memory target costs in speed.

Every run is a fresh process (peak RSS is its own, no warm caches), runs alternate order between repeats so
a drifting machine hits every system alike, and a matmul probe at the start and end (the best of a square
shape and the models' own layer shapes) gives the machine's peak GFLOP/s for MFU (bench/flops.py says what is counted). Timing covers the steps after --warmup, from
the end of the last warm-up step to the end of the last step, data loading included. "real" tokens are
non-pad tokens; "trained" tokens carry loss.

Loss parity: the same 20M model, fp32, no packing, no shuffling (TRL's sequential sampler), LoRA dropout 0,
linear schedule without warm-up, no weight decay: both systems see identical batches in identical order from
identical initial weights (checked), so per-step losses must agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import SHARED_DATA, machine_summary, peak_matmul_gflops, run_child, runs_folder, write_chat_data
from bench.flops import ModelShape, model_shape
from tunesmith.data.pipeline import prepare_data
from tunesmith.models.load import cpu_has_native_bf16, load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.tiny import save_tiny

DATA_FILES = ("alpaca_1k.jsonl", "sharegpt_glaive_toolcall_300.jsonl")
SHAPES: dict[str, dict[str, int]] = {
    "20M": {"hidden": 384, "layers": 8, "heads": 6, "intermediate": 1024},
    "60M": {"hidden": 640, "layers": 10, "heads": 10, "intermediate": 1728},
}
SYSTEMS = ("tunesmith", "trl-literal", "trl-tuned")
LOW_MEMORY = "tunesmith-ckpt"
"""tunesmith with `train.gradient_checkpointing: true` (off by default): the memory/speed trade, LoRA only."""
LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
TARGETS = {"vs_literal": 2.5, "vs_tuned": 1.8, "mfu_60m": 0.45, "rss_vs_tuned": 0.6, "loss_parity": 0.01}


def build_inputs(workdir: Path, data_dir: Path, sizes: list[str], seq_len: int) -> dict[str, dict[str, Any]]:
    """Per model size: the model folder, tunesmith's tokenization of the data as TRL input, and length facts."""
    chat, texts = write_chat_data([data_dir / name for name in DATA_FILES], workdir / "data" / "chat.jsonl")
    inputs = {}
    for size in sizes:
        model = save_tiny("llama", workdir / f"llama-{size}", vocab_size=8000, seed=0, texts=texts, kv_heads=SHAPES[size]["heads"],
                          max_positions=seq_len, **SHAPES[size])
        recipe = recipe_from_dict({"name": "tokenize", "model": str(model), "data": {"train": str(chat), "template": "plain"},
                                   "train": {"max_seq_len": seq_len}})
        samples = prepare_data(recipe, load_tokenizer(str(model))).train
        tokens = workdir / f"tokens-{size}.jsonl"
        tokens.write_text("".join(json.dumps({"input_ids": s.input_ids, "labels": s.labels}) + "\n" for s in samples))
        lengths = sorted(len(s) for s in samples)
        inputs[size] = {"model": str(model), "chat": str(chat), "tokens": str(tokens), "shape": model_shape(str(model), LORA["r"]),
                        "samples": len(samples), "median": lengths[len(lengths) // 2], "mean": sum(lengths) / len(lengths),
                        "cut": sum(n == seq_len for n in lengths)}
    return inputs


def tunesmith_payload(inp: dict[str, Any], adapter: str, args: argparse.Namespace, parity: bool = False,
                      checkpointing: bool = False) -> dict[str, Any]:
    train: dict[str, Any] = {"lr": args.lr[adapter], "max_steps": args.warmup + args.steps, "batch_size": args.batch,
                             "max_seq_len": args.seq_len, "seed": 0,
                             "gradient_checkpointing": True if checkpointing else "auto"}
    recipe: dict[str, Any] = {"name": f"{adapter}", "model": inp["model"], "method": "sft", "adapter": adapter,
                              "output": str(runs_folder(args.workdir)), "data": {"train": inp["chat"], "template": "plain"},
                              "train": train, "adapter_args": {**LORA}}
    if parity:
        train.update(max_steps=args.parity_steps, packing=False, shuffle=False, mixed_precision="no", scheduler="linear",
                     warmup_ratio=0.0, weight_decay=0.0)
        recipe["model_options"] = {"dtype": "fp32"}
        recipe["adapter_args"]["dropout"] = 0.0
    return {"recipe": recipe, "threads": args.threads}


def trl_payload(inp: dict[str, Any], adapter: str, system: str, args: argparse.Namespace, parity: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = {"max_steps": args.warmup + args.steps, "per_device_train_batch_size": args.batch,
                              "learning_rate": args.lr[adapter], "max_length": args.seq_len, "seed": 0}
    if system == "trl-tuned":
        config.update(packing=True, gradient_checkpointing=False)
        if not cpu_has_native_bf16():
            config["bf16"] = False
        elif adapter == "lora":
            config["model_init_kwargs"] = {"dtype": "bfloat16"}
    lora = {"r": LORA["r"], "lora_alpha": LORA["alpha"], "lora_dropout": LORA["dropout"]}
    if parity:
        config.update(max_steps=args.parity_steps, bf16=False, gradient_checkpointing=False, lr_scheduler_type="linear",
                      warmup_steps=0, weight_decay=0.0, optim="adamw_torch", train_sampling_strategy="sequential",
                      model_init_kwargs={"dtype": "float32"})
        lora["lora_dropout"] = 0.0
    return {"model": inp["model"], "dataset": inp["tokens"], "adapter": adapter, "config": config, "lora": lora,
            "output": str(args.workdir / "trl-out"), "threads": args.threads}


def run_system(system: str, inp: dict[str, Any], adapter: str, args: argparse.Namespace, tag: str,
               parity: bool = False) -> dict[str, Any]:
    log = args.workdir / "logs" / f"{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if system.startswith("tunesmith"):
        payload = tunesmith_payload(inp, adapter, args, parity, checkpointing=system == LOW_MEMORY)
        return run_child("bench.throughput_tunesmith", payload, log)
    return run_child("bench.throughput_trl", trl_payload(inp, adapter, system, args, parity), log)


def summarize(result: dict[str, Any], warmup: int, shape: ModelShape, adapter: str) -> dict[str, Any]:
    """Figures over the timed steps: from the end of the last warm-up step to the end of the last step."""
    steps = result["steps"]
    wall0, cpu0 = (steps[warmup - 1]["wall"], steps[warmup - 1]["cpu"]) if warmup else result["start"]
    timed = steps[warmup:]
    wall, cpu = timed[-1]["wall"] - wall0, timed[-1]["cpu"] - cpu0
    real, trained = sum(s["real"] for s in timed), sum(s["trained"] for s in timed)
    flops = shape.flops(adapter, real, trained, sum(s["sq"] for s in timed))
    return {"real_tps": real / wall, "trained_tps": trained / wall, "real_cpu": real / cpu, "cores": cpu / wall,
            "gflops": flops / wall / 1e9, "real_per_step": real / len(timed), "loss": steps[-1]["loss"],
            "rss_peak": result["rss_peak"], "rss_ready": result["rss_ready"], "settings": result["settings"]}


def print_config_table(size: str, adapter: str, runs: dict[str, list[dict[str, Any]]], peaks: dict[str, float]) -> None:
    print(f"\n{size} {adapter}: {'system':<12} {'real tok/s':>10} {'trained/s':>9} {'tok/CPU-s':>9} {'cores':>5} "
          f"{'GFLOP/s':>7} {'MFU fp32':>8} {'MFU bf16':>8} {'tok/step':>8} {'RSS MiB':>7} {'ready':>6} {'loss':>7}  settings")
    for system, results in runs.items():
        m = {key: statistics.median(r[key] for r in results) for key in results[0] if key != "settings"}
        s = results[0]["settings"]
        settings = (f"frozen {s['frozen'].replace('torch.', '')}, autocast {s['autocast']}, "
                    f"{'packed' if s['packing'] else 'padded'}{', grad-ckpt' if s['grad_ckpt'] else ''}")
        per_run = ", ".join(f"{r['real_tps']:.0f}" for r in results)
        # where bf16 is emulated (its peak below fp32's), a share of that peak says nothing about the run
        mfu_bf16 = f"{m['gflops'] / peaks['bf16']:>8.0%}" if peaks["bf16"] >= peaks["fp32"] else f"{'emulated':>8}"
        print(f"{'':>{len(size) + len(adapter) + 2}} {system:<12} {m['real_tps']:>10.0f} {m['trained_tps']:>9.0f} "
              f"{m['real_cpu']:>9.0f} {m['cores']:>5.2f} {m['gflops']:>7.1f} {m['gflops'] / peaks['fp32']:>8.0%} "
              f"{mfu_bf16} {m['real_per_step']:>8.0f} {m['rss_peak']:>7.0f} {m['rss_ready']:>6.0f} "
              f"{m['loss']:>7.4f}  {settings}; real tok/s per run: {per_run}")


def compute_dtype(settings: dict[str, str]) -> str:
    """The dtype a run's matmuls run in, whose peak its MFU is measured against: bf16 under bf16 autocast or
    with bf16 weights, else fp32."""
    return "bf16" if settings["autocast"] == "bf16" or "bfloat16" in settings["frozen"] else "fp32"


def ratio(runs: dict[str, list[dict[str, Any]]], key: str, other: str, ours: str = "tunesmith") -> float:
    """Median over repeats of `ours` / `other` (runs of one repeat are paired; they ran back to back)."""
    return statistics.median(a[key] / b[key] for a, b in zip(runs[ours], runs[other]))


def baseline_verdicts(size: str, adapter: str, runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Print tunesmith's ratios to each TRL baseline that ran; return the target lines they decide."""
    lines = []
    for other, name, target in (("trl-literal", "TRL literal", "vs_literal"), ("trl-tuned", "TRL tuned", "vs_tuned")):
        if other not in runs:
            continue
        speed, rss = ratio(runs, "real_tps", other), ratio(runs, "rss_peak", other)
        print(f"  tunesmith / {name + ':':<12} {speed:.2f}x real tok/s, {ratio(runs, 'real_cpu', other):.2f}x per CPU-s, "
              f"{rss:.2f}x peak RSS")
        if adapter == "lora":
            lines.append(f"{size} LoRA real tok/s vs {name} {speed:.2f}x (target >= {TARGETS[target]}x): "
                         f"{verdict(speed >= TARGETS[target])}")
        if other == "trl-tuned":
            lines.append(f"{size} {adapter} peak RSS vs TRL tuned {rss:.2f}x (target <= {TARGETS['rss_vs_tuned']}x): "
                         f"{verdict(rss <= TARGETS['rss_vs_tuned'])}")
    return lines


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FALLS SHORT"


def parity_check(inputs: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = []
    for adapter in ("lora", "full"):
        ours = run_system("tunesmith", inputs, adapter, args, f"parity-{adapter}-tunesmith", parity=True)
        theirs = run_system("trl-literal", inputs, adapter, args, f"parity-{adapter}-trl", parity=True)
        a, b = [s["loss"] for s in ours["steps"]], [s["loss"] for s in theirs["steps"]]
        same_tokens = [(s["real"], s["trained"]) for s in ours["steps"]] == [(s["real"], s["trained"]) for s in theirs["steps"]]
        worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
        final = abs(a[-1] - b[-1]) / abs(b[-1])
        init = ours["init"] == theirs["init"] or abs(ours["init"][1] - theirs["init"][1]) <= 1e-9 * abs(theirs["init"][1])
        print(f"parity {adapter}: {len(a)} steps, same batches {same_tokens}, same initial weights {init}; "
              f"losses tunesmith {a[0]:.5f} .. {a[-1]:.5f}, TRL {b[0]:.5f} .. {b[-1]:.5f}; "
              f"worst step |diff| {worst:.2e} relative, final {final:.2e}")
        lines.append(f"loss parity {adapter} (fp32, same batches): final loss within {final:.2%} of TRL's "
                     f"(target <= {TARGETS['loss_parity']:.0%}): {verdict(final <= TARGETS['loss_parity'] and same_tokens)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20M LoRA, 1 repeat, no parity")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", default="20M,60M")
    parser.add_argument("--adapters", default="lora,full")
    parser.add_argument("--batch", type=int, default=4, help="per step: samples (padded) or packed rows of --seq-len")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up")
    parser.add_argument("--parity-steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads in every run")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--systems", default=",".join(SYSTEMS + (LOW_MEMORY,)),
                        help="which of tunesmith, trl-literal, trl-tuned, tunesmith-ckpt to run (tunesmith always runs)")
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-throughput")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.sizes, args.adapters = 1, "20M", "lora"
    args.workdir = Path(args.workdir)
    args.lr = {"lora": 2e-4, "full": 2e-5}
    sizes, adapters = args.sizes.split(","), args.adapters.split(",")
    started = time.time()
    print("machine:", json.dumps(machine_summary()))
    inputs = build_inputs(args.workdir, Path(args.data_dir), sizes, args.seq_len)
    for size, inp in inputs.items():
        s: ModelShape = inp["shape"]
        print(f"model {size}: {s.total / 1e6:.1f}M parameters (body linear {s.body_linear / 1e6:.1f}M, head "
              f"{s.head / 1e6:.1f}M, LoRA r{LORA['r']} {s.lora / 1e6:.2f}M), {s.layers} layers; data: {inp['samples']} "
              f"samples, tokens median {inp['median']}, mean {inp['mean']:.0f}, {inp['cut']} cut at {args.seq_len}")
    print(f"each run: batch {args.batch}, seq len {args.seq_len}, {args.warmup} warm-up + {args.steps} timed steps, "
          f"{args.threads} threads, lr {args.lr}")
    shapes = [(1024, 1024, 1024)] + [(args.batch * args.seq_len, k, n) for size in sizes
                                     for k, n in ((SHAPES[size]["hidden"], SHAPES[size]["intermediate"]),
                                                  (SHAPES[size]["intermediate"], SHAPES[size]["hidden"]))]
    probes = [(peak_matmul_gflops(torch.float32, shapes), peak_matmul_gflops(torch.bfloat16, shapes))]
    results: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for repeat in range(args.repeats):
        for size in sizes:
            for adapter in adapters:
                systems = tuple(x for x in SYSTEMS + ((LOW_MEMORY,) if adapter == "lora" else ())
                                if x == "tunesmith" or x in args.systems.split(","))
                order = systems if repeat % 2 == 0 else tuple(reversed(systems))
                for system in order:
                    tag = f"{size}-{adapter}-{system}-r{repeat}"
                    result = run_system(system, inputs[size], adapter, args, tag)
                    summary = summarize(result, args.warmup, inputs[size]["shape"], adapter)
                    results.setdefault((size, adapter), {k: [] for k in systems})[system].append(summary)
                    print(f"  run {tag}: {summary['real_tps']:.0f} real tok/s, {summary['cores']:.2f} cores, "
                          f"peak RSS {summary['rss_peak']:.0f} MiB, loss {summary['loss']:.4f}", flush=True)
    probes.append((peak_matmul_gflops(torch.float32, shapes), peak_matmul_gflops(torch.bfloat16, shapes)))
    peaks = {"fp32": statistics.mean(p[0] for p in probes), "bf16": statistics.mean(p[1] for p in probes)}
    print(f"matmul peak GFLOP/s, best of {len(shapes)} shapes (fp32, bf16): start {probes[0][0]:.0f}, {probes[0][1]:.0f}; end {probes[1][0]:.0f}, "
          f"{probes[1][1]:.0f}; MFU uses the means")
    verdicts = []
    for (size, adapter), runs in results.items():
        print_config_table(size, adapter, runs, peaks)
        verdicts += baseline_verdicts(size, adapter, runs)
        if size == "60M":
            dtype = compute_dtype(runs["tunesmith"][0]["settings"])
            mfu = statistics.median(r["gflops"] for r in runs["tunesmith"]) / peaks[dtype]
            verdicts.append(f"60M {adapter} MFU vs the {dtype} matmul peak, the dtype it computes in, {mfu:.0%} "
                            f"(target >= {TARGETS['mfu_60m']:.0%}): "
                            f"{verdict(mfu >= TARGETS['mfu_60m'])}")
        if LOW_MEMORY in runs and "trl-tuned" in runs:
            low_rss, low_speed = ratio(runs, "rss_peak", "trl-tuned", LOW_MEMORY), ratio(runs, "real_tps", "trl-tuned", LOW_MEMORY)
            print(f"  {LOW_MEMORY} / TRL tuned: {low_speed:.2f}x real tok/s, {low_rss:.2f}x peak RSS "
                  f"(gradient checkpointing on; tunesmith's default is off)")
            verdicts.append(f"{size} {adapter} with train.gradient_checkpointing: peak RSS vs TRL tuned {low_rss:.2f}x "
                            f"(target <= {TARGETS['rss_vs_tuned']}x) at {low_speed:.2f}x its speed: "
                            f"{verdict(low_rss <= TARGETS['rss_vs_tuned'] and low_speed >= TARGETS['vs_tuned'])} "
                            f"(opt-in setting, not the default)")
    if not args.quick:
        print()
        verdicts += parity_check(inputs[sizes[0]], args)
    print("\ntargets:")
    for line in verdicts:
        print("  " + line)
    print(f"total {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
