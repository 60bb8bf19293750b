"""The figures and tables of `bench.gpu_throughput`: one row per configuration, then ours / TRL per adapter.

Rows are plain whitespace-separated columns (settings after a `|`), so a reader can diff two runs and the
test can parse them; a configuration that failed, timed out or was skipped prints its reason in place of
numbers, never zeros. GPU memory columns say `n/a` without CUDA (the dry run); every other column is a number.
"""

from __future__ import annotations

from typing import Any

from bench.flops import ModelShape

GIB = 1024.0
"""MiB per GiB: the children report memory in MiB."""

COLUMNS = ("adapter", "system", "step_s", "real_tok/s", "TFLOP/s", "MFU_meas", "MFU_H200", "alloc_GiB",
           "reserved_GiB", "RSS_GiB", "loss", "run_s")
"""The results table's columns, in order: step time, real (non-pad) tokens/s, model TFLOP/s, MFU against the
measured bf16 matmul peak and against the nominal H200 bf16 dense peak, torch.cuda.max_memory_allocated and
max_memory_reserved, peak host RSS, last loss, and the child's whole wall time (load included)."""
RATIO_COLUMNS = ("adapter", "ratio", "real_tok/s", "step_time", "MFU", "alloc", "reserved", "RSS")


def summarize(result: dict[str, Any], warmup: int, shape: ModelShape, adapter: str, wall: float) -> dict[str, Any]:
    """Figures over the timed steps: from the end of the last warm-up step to the end of the last step."""
    steps = result["steps"]
    start = steps[warmup - 1]["wall"] if warmup else result["start"][0]
    timed = steps[warmup:]
    seconds = timed[-1]["wall"] - start
    real, trained = sum(s["real"] for s in timed), sum(s["trained"] for s in timed)
    flops = shape.flops(adapter, real, trained, sum(s["sq"] for s in timed))
    gpu = result.get("gpu_mib") or {}
    return {"step_s": seconds / len(timed), "real_tps": real / seconds, "tflops": flops / seconds / 1e12,
            "loss": steps[-1]["loss"], "rss_gib": result["rss_peak"] / GIB,
            "alloc_gib": gpu["allocated"] / GIB if gpu else None,
            "reserved_gib": gpu["reserved"] / GIB if gpu else None,
            "real_per_step": real / len(timed), "settings": result["settings"], "wall": wall}


def _settings(s: dict[str, Any]) -> str:
    packing = "padding-free" if s.get("padding_free") else "packed" if s["packing"] else "padded"
    return (f"attention {s.get('attention')}, kernels {s.get('kernels')}, frozen {s['frozen'].replace('torch.', '')}, "
            f"trained {s['trained'].replace('torch.', '')}, autocast {s['autocast']}, {packing}"
            f"{', grad-ckpt' if s['grad_ckpt'] else ''}")


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def print_results(results: dict[tuple[str, str], dict[str, Any]], peak_tflops: float, nominal: float | None) -> None:
    """The results table; MFU_H200 is `n/a` when not on a GPU (a CPU against the H200 peak says nothing)."""
    print("\nresults:")
    print(" ".join(f"{c:>12}" if i > 1 else f"{c:<9}" for i, c in enumerate(COLUMNS)) + "  | settings")
    for (adapter, system), r in results.items():
        if "error" in r:
            print(f"{adapter:<9} {system:<9} {r['error']}")
            continue
        mfu_nominal = "n/a" if nominal is None else f"{r['tflops'] / nominal:.2%}"
        cells = [f"{r['step_s']:.4f}", f"{r['real_tps']:.1f}", f"{r['tflops']:.4g}", f"{r['tflops'] / peak_tflops:.2%}",
                 mfu_nominal, _gib(r["alloc_gib"]), _gib(r["reserved_gib"]), f"{r['rss_gib']:.2f}", f"{r['loss']:.4f}",
                 f"{r['wall']:.0f}"]
        print(f"{adapter:<9} {system:<9} " + " ".join(f"{c:>12}" for c in cells) + f"  | {_settings(r['settings'])}")


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "n/a" if ours is None or theirs is None else f"{ours / theirs:.3f}x"


def print_ratios(results: dict[tuple[str, str], dict[str, Any]]) -> None:
    """tunesmith / TRL per adapter (step time: below 1 is faster; memory: below 1 is smaller)."""
    print("\nours / TRL:")
    print(" ".join(f"{c:>12}" if i > 1 else f"{c:<9}" for i, c in enumerate(RATIO_COLUMNS)))
    for adapter in dict.fromkeys(a for a, _ in results):
        ours, theirs = results.get((adapter, "tunesmith"), {}), results.get((adapter, "trl"), {})
        if not ours or not theirs or "error" in ours or "error" in theirs:
            print(f"{adapter:<9} {'ours/TRL':<9} no ratio: a run is missing")
            continue
        keys = ("real_tps", "step_s", "tflops", "alloc_gib", "reserved_gib", "rss_gib")
        cells = [_ratio(ours[key], theirs[key]) for key in keys]
        print(f"{adapter:<9} {'ours/TRL':<9} " + " ".join(f"{c:>12}" for c in cells))
