"""Peak memory of the output head + cross-entropy, by route, at a small and a Llama-3-sized vocabulary.

    python -m bench.lm_head_memory          # ~1 min on 2 cores

The three routes of `tunesmith/methods/language_modeling/objective.py`, each in a fresh process on the same random hidden
states: "full" (logits at every position, then the loss), "sliced" (logits only at trained positions,
as `logits_to_keep` does) and "fused" (`losses.fused_linear_nll_sum`: chunks, gradients formed in the
forward). Forward and backward under bf16 autocast with a frozen bf16 head (LoRA-style), 4,096 positions
of which 60% are trained (the share measured on Alpaca + ShareGPT). Reported: peak RSS growth over the
process's memory just before the step (hidden states and weights already allocated), and the step's time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import current_rss_mib, emit_result, peak_rss_mib, run_child
from tunesmith.data.types import IGNORE_INDEX
from tunesmith.methods.shared.token_nll import fused_linear_nll_sum, kept_nll_sum, predicting_positions, token_nll_sum

ROUTES = ("full", "sliced", "fused")


def run(payload: dict[str, Any]) -> dict[str, Any]:
    torch.manual_seed(0)
    tokens, hidden_size, vocab = payload["tokens"], payload["hidden"], payload["vocab"]
    head = torch.randn(vocab, hidden_size, dtype=torch.bfloat16) * 0.02  # frozen, as under LoRA
    hidden = torch.randn(1, tokens, hidden_size, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, vocab, (1, tokens))
    labels[torch.rand(1, tokens) > payload["trained_share"]] = IGNORE_INDEX
    before, started = current_rss_mib(), time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if payload["route"] == "full":
            loss = token_nll_sum(hidden @ head.T, labels)[0]
        elif payload["route"] == "sliced":
            loss = kept_nll_sum(hidden[predicting_positions(labels)] @ head.T, labels)[0]
        else:
            targets = labels[:, 1:][labels[:, 1:] != IGNORE_INDEX]
            loss = fused_linear_nll_sum(hidden[predicting_positions(labels)], head, targets)
    loss.backward()
    return {"growth": peak_rss_mib() - before, "seconds": time.perf_counter() - started, "loss": float(loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help="JSON payload (internal)")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=1024)
    args = parser.parse_args()
    if args.child:
        emit_result(run(json.loads(args.child)))
        return
    log = Path(tempfile.gettempdir()) / "tunesmith-lm-head-memory.log"
    print(f"{args.tokens} positions (60% trained), hidden {args.hidden}, bf16 autocast, frozen bf16 head")
    print(f"{'vocab':>7} {'route':<7} {'peak growth MiB':>15} {'seconds':>8} {'loss':>14}")
    for vocab in (8000, 128256):
        results = {}
        for route in ROUTES:
            payload = {"route": route, "tokens": args.tokens, "hidden": args.hidden, "vocab": vocab, "trained_share": 0.6}
            results[route] = run_child("bench.lm_head_memory", payload, log)
            r = results[route]
            print(f"{vocab:>7} {route:<7} {r['growth']:>15.0f} {r['seconds']:>8.2f} {r['loss']:>14.2f}")
        print(f"{'':>7} fused/full memory {results['fused']['growth'] / results['full']['growth']:.2f}x, "
              f"fused/sliced {results['fused']['growth'] / results['sliced']['growth']:.2f}x; "
              f"time fused/sliced {results['fused']['seconds'] / results['sliced']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
