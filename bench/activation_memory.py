"""What one training micro-batch keeps for backward, by module kind: PEFT's LoRA layers against tunesmith's.

    python -m bench.activation_memory                    # 20M Llama of bench.throughput, LoRA r16, dropout 0.05
    python -m bench.activation_memory --size 60M --dropout 0

Autograd's saved-tensor hooks see every tensor a forward keeps for its backward; each distinct storage that is
not a parameter is counted once, under the innermost module running when it was saved, with its dtype and
shape. The run is built by `tunesmith train`'s own `build_trainer`, "plain" with `model_options.kernels: none`
and `attn_implementation: sdpa` (PEFT's layers, transformers' sdpa with its block-diagonal mask), "tunesmith"
with the defaults (fused LoRA layers, per-sample attention), and one micro-batch of packed rows goes forward. These counts do not depend on the machine's load, so one run
says it; peak RSS, which adds the allocator's slack, is `bench.throughput`'s measure.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch

from bench.common import SHARED_DATA, runs_folder
from bench.throughput import LORA, build_inputs
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.train.loop import build_trainer

MIB = 2**20


SETTINGS = {"plain": {"kernels": "none", "attn_implementation": "sdpa"}, "tunesmith": {}}
"""`model_options` of the two runs compared."""


def saved_by_module(setting: str, inp: dict, args: argparse.Namespace) -> tuple[collections.Counter, str]:
    """Bytes kept for backward by (module kind, dtype, shape) for one micro-batch, and the attention used."""
    recipe = recipe_from_dict({
        "name": f"activations-{setting}", "model": inp["model"], "method": "sft", "adapter": "lora",
        "output": str(runs_folder(args.workdir)), "data": {"train": inp["chat"], "template": "plain"},
        "train": {"max_steps": 1, "batch_size": args.batch, "max_seq_len": args.seq_len, "seed": 0},
        "adapter_args": {**LORA, "dropout": args.dropout}, "model_options": SETTINGS[setting],
    })
    trainer = build_trainer(recipe, overwrite=True)
    try:
        model, stack = trainer.model, ["(model)"]

        def leave(*_: object) -> None:  # a forward hook's return value would replace the module's output
            stack.pop()

        for module in model.modules():
            module.register_forward_pre_hook(lambda m, *_: stack.append(type(m).__name__))
            module.register_forward_hook(leave)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen: set[int] = set()
        kept: collections.Counter = collections.Counter()

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = t.untyped_storage().data_ptr()
            if key not in params and key not in seen:
                seen.add(key)
                kept[(stack[-1], str(t.dtype).removeprefix("torch."), "x".join(map(str, t.shape)))] += t.untyped_storage().nbytes()
            return t

        batch = trainer.objective.step_batches(0, model)[0]
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            trainer.objective.loss_sum(model, batch)
        return kept, trainer.state.recorded["attn_implementation"]
    finally:
        trainer.folder.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20M", choices=["20M", "60M"])
    parser.add_argument("--dropout", type=float, default=LORA["dropout"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--workdir", default="/tmp/tunesmith-bench-activations")
    args = parser.parse_args()
    args.workdir = Path(args.workdir)
    inp = build_inputs(args.workdir, Path(args.data_dir), [args.size], args.seq_len)[args.size]
    results = {setting: saved_by_module(setting, inp, args) for setting in SETTINGS}
    totals = {k: sum(v.values()) for k, (v, _) in results.items()}
    print(f"\n{args.size} LoRA r{LORA['r']} dropout {args.dropout}, {args.batch} packed rows of {args.seq_len}, "
          f"{torch.get_default_dtype()}: MiB kept for backward per micro-batch")
    kinds = sorted({key[0] for kept, _ in results.values() for key in kept},
                   key=lambda kind: -sum(kept[key] for kept, _ in results.values() for key in kept if key[0] == kind))
    print(f"  {'module':<24} {'plain':>12} {'tunesmith':>12}")
    for kind in kinds:
        cells = [sum(v for key, v in kept.items() if key[0] == kind) / MIB for kept, _ in results.values()]
        print(f"  {kind:<24} {cells[0]:>12.1f} {cells[1]:>12.1f}")
    print(f"  {'total':<24} {totals['plain'] / MIB:>12.1f} {totals['tunesmith'] / MIB:>12.1f}   "
          f"(tunesmith/plain {totals['tunesmith'] / totals['plain']:.2f}x)")
    print(f"  attention: plain {results['plain'][1]}, tunesmith {results['tunesmith'][1]}")
    for setting, (kept, _) in results.items():
        print(f"\n  largest kept, {setting}:")
        for (kind, dtype, shape), size in kept.most_common(8):
            print(f"    {kind:<24} {dtype:<9} {shape:<16} {size / MIB:8.1f} MiB")


if __name__ == "__main__":
    main()
