"""Print a PlanResult: memory by part with checkpointing off and on, host RAM, time, fixes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tunesmith.plan.memory import GIB
from tunesmith.plan.run import PlanResult

LABELS = {
    "weights": "weights", "adapter": "adapter weights", "gradients": "gradients", "optimizer": "optimizer states",
    "activations": "activations", "frozen-base activations": "frozen-base activations (measured extra)",
    "optimizer step": "optimizer step temporaries", "loaded checkpoint": "checkpoint pages read at load (CPU)",
    "logits": "logits", "reference": "reference copy", "runtime": "runtime",
}


def print_plan(result: PlanResult, console: Console) -> None:
    s = result.setup
    title = (f"{s.method} / {s.adapter}: {result.without.total_params / 1e6:,.1f}M parameters, "
             f"{result.without.trainable_params / 1e6:,.2f}M trained; micro-batch {s.micro_batch} x {s.seq_len} tokens; "
             f"{s.nproc} x {result.device.name} ({s.sharding})")
    table = Table(title=title)
    table.add_column("per device")
    table.add_column("no checkpointing", justify="right")
    table.add_column("checkpointing", justify="right")
    for key, label in LABELS.items():
        a, b = result.without.parts[key], result.with_ckpt.parts[key]
        if a or b:
            table.add_row(label, f"{a / GIB:.2f} GiB", f"{b / GIB:.2f} GiB")
    table.add_row("[bold]peak[/]", f"[bold]{result.without.total / GIB:.2f} GiB[/]",
                  f"[bold]{result.with_ckpt.total / GIB:.2f} GiB[/]")
    console.print(table)
    for line in result.vision.lines() if result.vision else []:
        console.print(line)
    verdict = "[green]fits[/]" if result.fits else "[red]does not fit[/]"
    console.print(f"gradient checkpointing {'on' if result.checkpointing else 'off'}: peak {result.chosen.total / GIB:.2f} "
                  f"GiB of {result.device.memory / GIB:.1f} GiB per device: {verdict}")
    console.print(f"host RAM: {result.host_bytes / GIB:.1f} GiB for {s.nproc} process(es)")
    print_time(result, console)
    if not result.fits:
        if result.fixes:
            console.print("to fit, change one of:")
            for fix in result.fixes:
                console.print(f"  - {fix}")
        else:
            console.print("no single change fits it: combine them, use a smaller model, or more/larger devices")


def print_time(result: PlanResult, console: Console) -> None:
    """Time per step, per epoch and for the run (train.max_steps honoured), and what the speed rests on."""
    t = result.time
    if t is None:
        why = "the data could not be read; give --tokens N" if result.size is None else "no speed for this device"
        console.print(f"time: unknown ({why})")
        return
    speed = f"{result.device.flops / 1e9:.3g} GFLOP/s achieved per device"
    if result.device.probe:
        speed += f", from a {result.device.probe} matmul probe of this CPU (the dtype the run computes in)"
    console.print(f"time per step: ~{_duration(t.step_seconds)} ({t.tokens_per_step:,.0f} tokens; {speed})")
    console.print(f"time per epoch: ~{_duration(t.epoch_seconds)} ({t.epoch_steps} steps, "
                  f"{result.size.tokens if result.size else 0:,} tokens)")
    console.print(f"time for the run: ~{_duration(t.run_seconds)} ({t.steps} steps"
                  f"{', train.max_steps' if t.max_steps else ''})")
    if t.sampling_left_out:
        console.print("these times leave out sampling the rollouts (generation, one token at a time), often "
                      "most of a step")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
