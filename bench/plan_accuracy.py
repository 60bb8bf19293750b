"""The memory model (`tunesmith plan`) against measured peak memory, run by run.

    python -m bench.plan_accuracy            # 16 runs, ~6 min on 2 cores
    python -m bench.plan_accuracy --quick    # the larger model only (8 runs)

Each run is `build_trainer` + a few optimizer steps of tunesmith's own loop in a fresh process (so the peak
is its own), on CPU, where the device memory is the process's resident memory: the measured figure is the
peak RSS (VmHWM), the estimate is `plan.estimate_memory` for the same recipe on this CPU, runtime included.
Runs: full, LoRA, QLoRA (SFT, packed rows) and DPO (LoRA) x two random Llamas x checkpointing off/on.
Target: every estimate within +-15% of the measured peak.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.common import SHARED_DATA, child_or_parent, machine_summary, peak_rss_mib, run_child
from tunesmith.errors import UserError

SIZES: dict[str, dict[str, int]] = {
    "13M": {"hidden": 256, "layers": 6, "heads": 4, "kv_heads": 4, "intermediate": 688},
    "45M": {"hidden": 512, "layers": 10, "heads": 8, "kv_heads": 8, "intermediate": 1376},
}
RUNS = (("sft", "full"), ("sft", "lora"), ("sft", "qlora"), ("dpo", "lora"))
TARGET = 0.15


def child_main(payload: dict[str, Any]) -> dict[str, Any]:
    """One run in this fresh process: train a few steps, return the peak and the plan's estimate."""
    import torch

    from tunesmith.plan import plan_memory_for
    from tunesmith.recipe.spec import recipe_from_dict
    from tunesmith.train.loop import _train_step, build_trainer

    torch.set_num_threads(payload["threads"])
    recipe = recipe_from_dict(payload["recipe"], source="bench recipe")
    estimate = plan_memory_for(recipe)
    trainer = build_trainer(recipe, overwrite=True)
    for step in range(payload["steps"]):
        _train_step(trainer, step)
    return {"peak_mib": peak_rss_mib(), "estimate_mib": estimate.total / 2**20,
            "parts_mib": {k: v / 2**20 for k, v in estimate.parts.items()},
            "trainable": trainer.state.trainable_params}


def prepare(workdir: Path, data_dir: Path) -> dict[str, Path]:
    """Models (tokenizer trained on the data) and data slices: Alpaca for SFT, preference pairs for DPO."""
    from tunesmith.data.formats import parse_rows
    from tunesmith.data.loading import load_rows
    from tunesmith.testing.tiny import save_tiny

    sources = {"sft": data_dir / "alpaca_1k.jsonl", "dpo": data_dir / "preference_dpo_en_demo_300.jsonl"}
    for source in sources.values():
        if not source.is_file():
            raise UserError(f"bench data file not found: {source}; pass --data-dir with the shared datasets")
    workdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for method, source in sources.items():
        paths[method] = workdir / f"{method}.jsonl"
        paths[method].write_text("\n".join(source.read_text().splitlines()[:96]) + "\n")
    texts = [m.content for ex in parse_rows(load_rows(str(paths["sft"]))).examples for m in ex.messages]
    for name, shape in SIZES.items():
        if not (workdir / name / "config.json").is_file():
            save_tiny("llama", workdir / name, vocab_size=4000, texts=texts, **shape)
        paths[name] = workdir / name
    return paths


def recipe(paths: dict[str, Path], size: str, method: str, adapter: str, ckpt: bool, args: argparse.Namespace) -> dict:
    return {
        "name": f"{size}-{method}-{adapter}-{'ckpt' if ckpt else 'nockpt'}", "model": str(paths[size]),
        "method": method, "adapter": adapter, "output": str(Path(args.workdir) / "runs"),
        "data": {"train": str(paths[method]), "eval": 0.0, "template": "plain", "cache": False},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "max_seq_len": args.seq_len,
                  "warmup_ratio": 0.0, "gradient_checkpointing": ckpt, "threads": args.threads},
    }


def run_all(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    paths = prepare(workdir, Path(args.data_dir))
    print(f"machine: {json.dumps(machine_summary())}")
    print(f"each run: {args.steps} steps, micro-batch {args.batch_size} (DPO: pairs) x {args.seq_len} tokens, "
          f"{args.threads} thread(s); peak = VmHWM of a fresh process")
    sizes = ["45M"] if args.quick else list(SIZES)
    header = f"{'run':<26} {'trainable':>10} {'estimate MiB':>13} {'peak MiB':>9} {'error':>7}  largest parts (MiB)"
    print(header)
    misses = 0
    for size in sizes:
        for method, adapter in RUNS:
            for ckpt in (False, True):
                spec = recipe(paths, size, method, adapter, ckpt, args)
                payload = {"recipe": spec, "steps": args.steps, "threads": args.threads}
                r = run_child("bench.plan_accuracy", payload, workdir / f"{spec['name']}.log")
                error = r["estimate_mib"] / r["peak_mib"] - 1
                misses += abs(error) > TARGET
                parts = sorted(r["parts_mib"].items(), key=lambda kv: -kv[1])[:4]
                shown = ", ".join(f"{k} {v:.0f}" for k, v in parts)
                print(f"{spec['name']:<26} {r['trainable']:>10,} {r['estimate_mib']:>13.0f} {r['peak_mib']:>9.0f} "
                      f"{100 * error:>+6.1f}%  {shown}", flush=True)
    verdict = "PASS" if misses == 0 else f"FALLS SHORT ({misses} run(s) outside)"
    print(f"target: every estimate within +-{100 * TARGET:.0f}% of the measured peak: {verdict}")
    return 0 if misses == 0 else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the larger model only")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-plan-accuracy")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(child_or_parent(parse_args(sys.argv[1:] if argv is None else argv), child_main, run_all))


if __name__ == "__main__":
    main()
