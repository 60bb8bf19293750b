"""What to change when a plan does not fit: each single change tried on the memory model, cheapest first."""

from __future__ import annotations

from dataclasses import replace

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.plan.memory import GIB, TrainSetup, estimate_memory


def candidate_changes(s: TrainSetup) -> list[tuple[str, TrainSetup]]:
    """(recipe change in words, the setup it gives), from least to most costly in speed or quality."""
    changes: list[tuple[str, TrainSetup]] = []
    kind = s.adapter_kind
    if not s.checkpointing and kind.checkpointing:
        changes.append(("train.gradient_checkpointing: true (about a third slower)", replace(s, checkpointing=True)))
    micro = s.micro_batch // 2
    while micro >= 1:
        accum = s.micro_batch // micro
        changes.append((f"train.batch_size: {micro} with train.grad_accum x{accum} (same effective batch)",
                        replace(s, micro_batch=micro, checkpointing=True)))
        micro //= 2
    if kind.trains_base and s.optimizer == "adamw":
        changes.append(("an 8-bit AdamW (optimizer states 2 instead of 8 bytes per weight)",
                        replace(s, optimizer="adamw8bit", checkpointing=True)))
    changes += [_switch_adapter(s, name) for name in kind.memory.lighter]
    if s.nproc > 1 and s.sharding not in ("zero3", "fsdp"):
        changes.append((f"shard weights, gradients and optimizer over {s.nproc} processes (FSDP / ZeRO-3)",
                        replace(s, sharding="zero3")))
    if s.seq_len > 512:
        changes.append((f"train.max_seq_len: {s.seq_len // 2}", replace(s, seq_len=s.seq_len // 2, checkpointing=True)))
    return changes


def _switch_adapter(s: TrainSetup, name: str) -> tuple[str, TrainSetup]:
    """Training with adapter `name` instead, on a frozen bf16 base (a 4-bit one under checkpointing)."""
    lighter = ADAPTER_KINDS[name]
    checkpointing = s.checkpointing or lighter.base_quantization is not None
    return (f"adapter: {name} ({lighter.memory.note})",
            replace(s, adapter=name, weight_dtype="bf16", reference_copy=False, checkpointing=checkpointing))


def fixes(s: TrainSetup, memory: int, limit: int = 4) -> list[str]:
    """Up to `limit` single changes that bring the estimate under `memory`, each with its new peak."""
    found = []
    for words, changed in candidate_changes(s):
        total = estimate_memory(changed).total
        if total <= memory:
            found.append(f"{words}: {total / GIB:.2f} GiB")
        if len(found) == limit:
            break
    return found
