"""Child process of `bench.throughput`: one tunesmith run through the loop's own step function.

    python -m bench.throughput_tunesmith --child '{"recipe": {...}, "threads": 2}'

It builds the run exactly as `tunesmith train` does (`build_trainer`) and calls the loop's `_train_step`
for every step, so what is timed is what `train()` executes per step (collation, forward, loss, backward,
clipping, optimizer). The start-of-run evaluation and the final save are left out: they are not throughput.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.common import child_main, cuda_memory_mib, cuda_sync, current_rss_mib, peak_rss_mib, trainable_checksum
from tunesmith.data.types import PackedRow
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.train.accelerator import resolve_mixed_precision
from tunesmith.train.loop import _train_step, build_trainer


def run(payload: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(payload["threads"])
    recipe = recipe_from_dict(payload["recipe"])
    trainer = build_trainer(recipe, overwrite=True)
    plan = trainer.objective.plan
    result: dict[str, Any] = {
        "init": trainable_checksum(trainer.model), "rss_ready": current_rss_mib(),
        "settings": {
            "trained": str(next(p.dtype for p in trainer.model.parameters() if p.requires_grad)),
            "frozen": str(next((p.dtype for p in trainer.model.parameters() if not p.requires_grad), "none")),
            "autocast": resolve_mixed_precision(recipe.train.mixed_precision), "packing": recipe.train.packing,
            "grad_ckpt": trainer.state.recorded["gradient_checkpointing"], "threads": torch.get_num_threads(),
            "attention": trainer.state.recorded["attn_implementation"], "kernels": trainer.state.recorded["kernels"],
        },
        "start": [time.perf_counter(), time.process_time()], "steps": [],
    }
    for step in range(trainer.objective.steps):
        record = _train_step(trainer, step)
        cuda_sync()  # on a GPU the step's kernels may still be queued
        wall, cpu = time.perf_counter(), time.process_time()
        rows = plan.micro_batches[step * plan.accum:(step + 1) * plan.accum]
        lengths = [n for micro in rows for row in micro
                   for n in (row.lengths if isinstance(row, PackedRow) else [len(row.input_ids)])]
        if sum(lengths) != plan.real_tokens(step):
            raise RuntimeError(f"step {step}: sample lengths sum to {sum(lengths)}, the loop counted {plan.real_tokens(step)}")
        result["steps"].append({"wall": wall, "cpu": cpu, "real": sum(lengths), "trained": record["units"],
                                "sq": sum(n * n for n in lengths), "loss": record["loss"]})
    result["rss_peak"] = peak_rss_mib()
    result["gpu_mib"] = cuda_memory_mib()
    return result


if __name__ == "__main__":
    child_main(run, __doc__.splitlines()[0])
