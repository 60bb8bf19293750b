"""Our multiple-choice eval vs the previous per-pair scorer vs lm-evaluation-harness: items/s and agreement.

    python -m bench.eval_speed --model smollm2 --suite mmlu --shots 5 --limit 10
    python -m bench.eval_speed --model ../shared/fixtures/stories260k --suite hellaswag --shots 0 --limit 50

One process, the same model folder, items, shots, batch size and fp32 for all three:
  * ours        tunesmith's benchmark unit (multiple_choice: one pass per context, shared few-shot prefix in a
                KV cache, head only at scored positions);
  * per-pair    the previous scorer (loglik.loglikelihoods: one sequence per (context, choice), full logits)
                on the very same prompts;
  * lm-eval     lm-evaluation-harness's HF backend through local task definitions (bench/lm_eval_reference.py),
                the model built once before the clock starts.
Agreement counts items where the chosen answer (acc; acc_norm for HellaSwag) equals ours. `--model smollm2`
converts the GGUF fixture once into a cache folder (bench/smollm2.py). Times on a shared machine drift:
compare the ratios printed by one run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.lm_eval_reference import run_harness, write_tasks
from bench.smollm2 import SHARED, smollm2_folder
from tunesmith.evaluate.benchmarks import RunSettings, get, locate
from tunesmith.evaluate.benchmarks.multiple_choice import MultipleChoice
from tunesmith.evaluate.loglik import loglikelihoods
from tunesmith.models.load import load_model, load_tokenizer


def _ours(model: Any, tokenizer: Any, suite: str, data: Any, settings: RunSettings) -> tuple[dict[str, int], float]:
    started = time.perf_counter()
    outcome = get(suite).run(model, tokenizer, data, settings)
    seconds = time.perf_counter() - started
    key = "prediction_norm" if suite == "hellaswag" else "prediction"
    return {r["id"]: r[key] for r in outcome.samples}, seconds


def _prompts(suite: str, data: Any, settings: RunSettings) -> list[tuple[str, MultipleChoice, str]]:
    """(id, item, prompt) for every scored item, built by the benchmark unit's own prompt function."""
    unit = __import__(f"tunesmith.evaluate.benchmarks.{suite}", fromlist=["prompt"])
    if suite == "mmlu":
        return [(f"{s}/{i}", items[i], unit.prompt(items, i, settings.shots)[0])
                for s, items in sorted(data.items()) for i in range(min(settings.limit or len(items), len(items)))]
    from tunesmith.evaluate.benchmarks.multiple_choice import with_shots

    return [(str(i), data[i], with_shots(data, i, settings.shots)[0])
            for i in range(min(settings.limit or len(data), len(data)))]


def _per_pair(model: Any, tokenizer: Any, suite: str, data: Any, settings: RunSettings) -> tuple[dict[str, int], float]:
    started = time.perf_counter()
    prompted = _prompts(suite, data, settings)
    pairs = [(prompt, " " + c) for _, item, prompt in prompted for c in item.choices]
    scores = iter(r.logprob for r in loglikelihoods(model, tokenizer, pairs, settings.batch_size))
    chosen = {}
    for item_id, item, _ in prompted:
        lls = [next(scores) for _ in item.choices]
        if suite == "hellaswag":
            lls = [ll / max(len(c), 1) for ll, c in zip(lls, item.choices)]
        chosen[item_id] = max(range(len(lls)), key=lls.__getitem__)
    return chosen, time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", help="'smollm2' (the GGUF fixture) or a model folder")
    parser.add_argument("--suite", choices=["mmlu", "hellaswag"], default="mmlu")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--limit", type=int, default=10, help="items (per subject for MMLU)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip", nargs="*", default=[], choices=["per-pair", "lm-eval"])
    parser.add_argument("--subjects", help="comma-separated MMLU subjects to keep (default: all)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_dir = str(smollm2_folder()) if args.model == "smollm2" else args.model
    data_dir = SHARED / "data"
    data = get(args.suite).load(locate(args.suite, None, data_dir))
    if args.suite == "mmlu" and args.subjects:
        data = {s: data[s] for s in args.subjects.split(",")}
    settings = RunSettings(limit=args.limit, shots=args.shots, batch_size=args.batch_size)
    model, tokenizer = load_model(model_dir, dtype="fp32"), load_tokenizer(model_dir)
    model.eval()
    _warm_up(model)
    runs: dict[str, tuple[dict[str, int], float]] = {"ours": _ours(model, tokenizer, args.suite, data, settings)}
    _report(args, runs)
    if "lm-eval" not in args.skip:
        runs["lm-eval"] = _harness(model_dir, args, data_dir)
        _report(args, runs)
    if "per-pair" not in args.skip:
        runs["per-pair"] = _per_pair(model, tokenizer, args.suite, data, settings)
    return _report(args, runs)


@torch.inference_mode()
def _warm_up(model: Any) -> None:
    """One untimed forward, so the first scorer does not pay the process's one-off start-up costs
    (kernel selection, allocator growth) that the later ones would not."""
    model(input_ids=torch.ones((4, 256), dtype=torch.long))


def _harness(model_dir: str, args: argparse.Namespace, data_dir: Path) -> tuple[dict[str, int], float]:
    with tempfile.TemporaryDirectory() as folder:
        tasks = write_tasks(Path(folder), data_dir)
        wanted = {t: s for t, s in tasks.items() if s.partition(":")[0] == args.suite
                  and (not args.subjects or s.partition(":")[2] in args.subjects.split(","))}
        run = run_harness(model_dir, Path(folder), wanted, shots=args.shots, limit=args.limit,
                          batch_size=args.batch_size)
    chosen = (run.acc_norm if args.suite == "hellaswag" else run.acc)[args.suite]
    return chosen, run.seconds


def _report(args: argparse.Namespace, runs: dict[str, tuple[dict[str, int], float]]) -> dict[str, Any]:
    ours, ours_s = runs["ours"]
    print(f"{args.suite} {args.shots}-shot, limit {args.limit}, model {args.model}, batch {args.batch_size}, "
          f"{args.threads} threads")
    print(f"\n{'scorer':<10} {'items':>6} {'seconds':>9} {'items/s':>8} {'ours faster by':>15} {'same answer':>12}")
    figures = {}
    for name, (chosen, seconds) in runs.items():
        same = sum(chosen.get(k) == v for k, v in ours.items())
        figures[name] = {"items": len(chosen), "seconds": round(seconds, 2), "items_per_s": len(chosen) / seconds,
                         "speedup_of_ours": seconds / ours_s, "agreement": same,
                         "differ": sorted(k for k, v in ours.items() if chosen.get(k) != v)}
        print(f"{name:<10} {len(chosen):>6} {seconds:>9.1f} {len(chosen) / seconds:>8.2f} "
              f"{seconds / ours_s:>14.2f}x {same:>5}/{len(ours)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures}, indent=2))
    return figures


if __name__ == "__main__":
    main()
