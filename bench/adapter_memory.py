"""Memory of LoRA vs QLoRA training, through tunesmith's real training loop, side by side.

    python -m bench.adapter_memory                 # lora and qlora, bf16 and fp32 (~5-10 min on 2 cores)
    python -m bench.adapter_memory --dtype bf16    # one dtype only

Model: a random ~160M-parameter Llama (hidden 1024, 12 layers, MLP 2816, a 2k-token vocabulary) stored in
bf16, trained on short batches (1 x 128 tokens), so that its linear weights, the part QLoRA stores in 4 bits,
dominate memory rather than activations. Data: the first rows of Alpaca 1k. Each configuration is one
`build_trainer` + `trainer_run` (a few optimizer steps, LoRA r16 on all linear layers) in a fresh process,
so its peak is its own. All figures are relative to the process's resident memory before the model is
loaded (imports and data, the same for every configuration; printed once):

* weights MiB: bytes of the model's parameters and buffers as trained (4-bit weights at their packed size,
  plus their quantization constants): what QLoRA exists to shrink;
* held MiB: resident memory after training, once freed heap pages are handed back (gc + malloc_trim):
  the model, adapter and optimizer state the run keeps;
* peak MiB: the high-water mark (VmHWM) over loading and training. Safetensors are memory-mapped, so the
  on-disk bf16 weights count while they are read, for QLoRA too (it quantizes after reading); on CPU,
  bitsandbytes dequantizes each 4-bit layer for its matmul, and PEFT's QLoRA preparation keeps norms and
  embeddings in fp32, so activations are larger than LoRA's at bf16.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from bench.common import SHARED_DATA, child_or_parent, machine_summary, peak_rss_mib, run_child
from tunesmith.data.formats import parse_rows
from tunesmith.data.loading import load_rows
from tunesmith.errors import UserError
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import build_trainer, trainer_run

SHAPE: dict[str, int] = {"hidden": 1024, "layers": 12, "heads": 16, "kv_heads": 16, "intermediate": 2816}
ADAPTERS = ("lora", "qlora")


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers; a 4-bit weight adds its quantization constants (absmax, nested)."""
    total = sum(t.numel() * t.element_size() for t in chain(model.parameters(), model.buffers()))
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        if state is not None:
            total += state.absmax.numel() * state.absmax.element_size()
            if state.nested:
                total += state.state2.absmax.numel() * state.state2.absmax.element_size()
    return total


def rss_mib() -> float:
    """This process's resident memory now (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def held_rss_mib() -> float:
    """Resident memory after returning freed heap pages to the system: what is really in use."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib()


def child_main(payload: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this fresh process: build, train a few steps, report memory."""
    recipe = recipe_from_dict(payload["recipe"], source="bench recipe")
    baseline = held_rss_mib()
    trainer = build_trainer(recipe, overwrite=True)
    trainer_run(trainer)
    return {
        "baseline_mib": baseline,
        "weights_mib": weight_bytes(trainer.model) / 2**20,
        "held_mib": held_rss_mib() - baseline,
        "peak_mib": peak_rss_mib() - baseline,
        "trainable": trainer.state.trainable_params,
        "total": trainer.state.total_params,
        "final_loss": trainer.metrics.trains[-1][1],
    }


def prepare(workdir: Path, data_dir: Path, rows: int) -> tuple[Path, Path]:
    """The benchmark model (tokenizer trained on the data) and a JSONL slice of Alpaca 1k."""
    source = data_dir / "alpaca_1k.jsonl"
    if not source.is_file():
        raise UserError(f"bench data file not found: {source}; pass --data-dir with the shared datasets")
    lines = source.read_text().splitlines()[:rows]
    data = workdir / "alpaca.jsonl"
    workdir.mkdir(parents=True, exist_ok=True)
    data.write_text("\n".join(lines) + "\n")
    texts = [m.content for ex in parse_rows(load_rows(str(data))).examples for m in ex.messages]
    model = save_tiny("llama", workdir / "model", vocab_size=2000, texts=texts, **SHAPE)
    AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).save_pretrained(model)  # bf16 on disk
    return model, data


def recipe(model: Path, data: Path, out: Path, adapter: str, dtype: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": f"{adapter}-{dtype}", "model": str(model), "adapter": adapter, "output": str(out),
        "data": {"train": str(data), "eval": 0.0, "template": "plain"},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "max_seq_len": args.seq_len,
                  "mixed_precision": "no", "warmup_ratio": 0.0},
        "model_options": {"dtype": dtype},
        "adapter_args": {"r": 16, "alpha": 32},
    }


def run_all(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    model, data = prepare(workdir, Path(args.data_dir), args.rows)
    print(f"machine: {json.dumps(machine_summary())}")
    results = {}
    for dtype in args.dtype:
        for adapter in ADAPTERS:
            payload = {"recipe": recipe(model, data, workdir / "runs", adapter, dtype, args)}
            log = workdir / f"{adapter}-{dtype}.log"
            results[adapter, dtype] = run_child("bench.adapter_memory", payload, log)
    first = next(iter(results.values()))
    print(f"\nLoRA vs QLoRA training memory, {first['total'] / 1e6:.0f}M-parameter Llama, {args.steps} steps of "
          f"{args.batch_size} x {args.seq_len} tokens, r16 all-linear, fresh process per run; MiB above the "
          f"{first['baseline_mib']:.0f} MiB the process holds before loading the model")
    print(f"{'adapter':<8} {'dtype':<5} {'weights MiB':>12} {'held MiB':>9} {'peak MiB':>9} {'trainable':>10} {'loss':>7}")
    for (adapter, dtype), r in results.items():
        share = f"{100 * r['trainable'] / r['total']:.2f}%"
        print(f"{adapter:<8} {dtype:<5} {r['weights_mib']:>12.1f} {r['held_mib']:>9.1f} {r['peak_mib']:>9.1f} "
              f"{share:>10} {r['final_loss']:>7.3f}")
    for dtype in args.dtype:
        lora, qlora = results["lora", dtype], results["qlora", dtype]
        ratios = ", ".join(f"{key} {qlora[f'{key}_mib'] / lora[f'{key}_mib']:.2f}x" for key in ("weights", "held", "peak"))
        print(f"{dtype}: QLoRA / LoRA: {ratios}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.adapter_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", nargs="+", choices=["bf16", "fp32"], default=["bf16", "fp32"],
                        help="model dtype (the compute dtype of QLoRA's 4-bit layers)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rows", type=int, default=64, help="Alpaca rows to train on")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-adapter-memory")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    child_or_parent(parse_args(sys.argv[1:] if argv is None else argv), child_main, run_all)


if __name__ == "__main__":
    main()
