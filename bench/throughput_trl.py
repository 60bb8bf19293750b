"""Child process of `bench.throughput`: one TRL `SFTTrainer` run on the same tokens, weights and settings.

    python -m bench.throughput_trl --child '{"model": DIR, "dataset": JSONL, "config": {...}, ...}'

The dataset is tunesmith's own tokenization (`input_ids` and `labels` per sample, in file order), so both
systems train on exactly the same tokens with the same trained positions; TRL skips its tokenization for
pre-tokenized data. Per-step times come from a callback at each step end; per-step token counts from a
wrapper around TRL's own collator (batches are collated in training order, one per step at accumulation 1).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import child_main, cuda_memory_mib, cuda_sync, current_rss_mib, peak_rss_mib, trainable_checksum


class CountingCollator:
    """TRL's collator, unchanged, plus the real tokens, trained tokens and sum of n^2 of every batch."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[dict[str, int]] = []

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner(examples)
        if "attention_mask" in batch:
            lengths = batch["attention_mask"].sum(dim=1).tolist()
        else:  # padding-free: one flattened row, a sample starts wherever the position restarts at 0
            starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["position_ids"].shape[1]]
            lengths = [b - a for a, b in zip(starts, starts[1:])]
        trained = int((batch["labels"][:, 1:] != -100).sum())
        self.batches.append({"real": int(sum(lengths)), "trained": trained, "sq": int(sum(n * n for n in lengths))})
        return batch


def run(payload: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(payload["threads"])
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    rows = [json.loads(line) for line in Path(payload["dataset"]).read_text().splitlines()]
    args = SFTConfig(output_dir=payload["output"], use_cpu=payload.get("use_cpu", True), report_to="none", save_strategy="no",
                     logging_steps=1, disable_tqdm=True, **payload["config"])
    peft_config = None
    if payload["adapter"] in ("lora", "qlora"):
        peft_config = LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear", **payload["lora"])
    quantization = None
    if payload["adapter"] == "qlora":  # the QLoRA base tunesmith loads: NF4, double quantization, compute in bf16
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                          bnb_4bit_compute_dtype=torch.bfloat16)
    set_seed(args.seed)  # the same seed tunesmith sets before its model and adapter are built
    trainer = SFTTrainer(model=payload["model"], args=args, train_dataset=Dataset.from_list(rows),
                         peft_config=peft_config, quantization_config=quantization)
    counter = CountingCollator(trainer.data_collator)
    trainer.data_collator = counter
    ends: list[list[float]] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            cuda_sync()  # on a GPU the step's kernels may still be queued
            ends.append([time.perf_counter(), time.process_time()])

    trainer.add_callback(StepClock())
    model = trainer.model
    result: dict[str, Any] = {
        "init": trainable_checksum(model), "rss_ready": current_rss_mib(),
        "settings": {
            "trained": str(next(p.dtype for p in model.parameters() if p.requires_grad)),
            "frozen": str(next((p.dtype for p in model.parameters() if not p.requires_grad), "none")),
            "autocast": "bf16" if args.bf16 else "no", "packing": args.packing,
            "padding_free": trainer.padding_free, "grad_ckpt": args.gradient_checkpointing,
            "threads": torch.get_num_threads(), "attention": model.config._attn_implementation,
            "kernels": "liger" if args.use_liger_kernel else "none",
        },
        "start": [time.perf_counter(), time.process_time()],
    }
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if len(ends) != len(losses) or len(counter.batches) < len(ends):
        raise RuntimeError(f"{len(ends)} step ends, {len(losses)} losses, {len(counter.batches)} batches collated")
    result["steps"] = [{"wall": wall, "cpu": cpu, "loss": loss, **counts}
                       for (wall, cpu), loss, counts in zip(ends, losses, counter.batches)]
    result["rss_peak"] = peak_rss_mib()
    result["gpu_mib"] = cuda_memory_mib()
    return result


if __name__ == "__main__":
    child_main(run, __doc__.splitlines()[0])
