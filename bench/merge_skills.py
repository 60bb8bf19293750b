"""What merging two LoRA adapters costs each skill: train one adapter per skill on one base, merge them with
every `tunesmith merge --method`, and score each skill held out on each single adapter and each merge.

    python -m bench.merge_skills [--workdir /tmp/merge-skills] [--steps 400] [--heldout 100]

The base is a tiny random Llama taught one skill by full fine-tuning ("Repeat the words", the demo's world,
tunesmith/testing/demo.py); adapter A then learns "Reverse the words" and adapter B "Say the first word",
each on its own data (rank 8, every linear). The score is exact match of the greedy answer on fresh word
lists never trained on. Merges use weights 1, 1 and density 0.5 unless told otherwise, through the same
`combine_runs` the CLI calls; `retained` is a merge's score as a share of the single adapter's on that skill.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from tunesmith.data.tokenize import tokenize_prompt
from tunesmith.data.types import Message
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs import resolve_target
from tunesmith.runs.load import load_target
from tunesmith.ship.combine import combine_runs
from tunesmith.testing.demo import make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train.loop import train

BASE_SKILL = "Repeat the words"
SKILLS = {"A": "Reverse the words", "B": "Say the first word"}
METHODS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune", "ties_svd", "dare_linear_svd",
           "dare_ties_svd", "magnitude_prune_svd")


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _recipe(name: str, model: Path, data: Path, out: Path, adapter: str, lr: float, steps: int, rank: int = 8) -> object:
    return recipe_from_dict({
        "name": name, "model": str(model), "adapter": adapter, "output": str(out),
        "data": {"train": str(data), "eval": 0.0, "template": "plain"},
        "train": {"lr": lr, "max_steps": steps, "batch_size": 8, "max_seq_len": 128, "mixed_precision": "no",
                  "save_every": 100000, "warmup_ratio": 0.03, "threads": 1},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": rank, "alpha": 2 * rank, "dropout": 0.0, "target_modules": "all-linear"},
    }, source="bench recipe")


@torch.no_grad()
def exact_match(run: Path, rows: list[dict[str, str]]) -> float:
    """Share of `rows` whose greedy answer equals the expected one; prompts of one length batch together."""
    loaded = load_target(resolve_target(str(run)), dtype="fp32")
    tokenizer, model = loaded.tokenizer, loaded.model
    groups: dict[int, list[tuple[list[int], str]]] = {}
    for row in rows:
        ids = tokenize_prompt(tokenizer, [Message("user", row["instruction"])])
        groups.setdefault(len(ids), []).append((ids, row["output"]))
    right = 0
    for items in groups.values():
        ids = torch.tensor([i for i, _ in items])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        answers = tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        right += sum(answer.strip() == want for answer, (_, want) in zip(answers, items))
    return right / len(rows)


def update_overlap(base: Path, a: Path, b: Path) -> tuple[float, float]:
    """Mean cosine between the two adapters' full updates B·A·scale of each wrapped module, and their mean size
    relative to the base weight: overlapping, large updates are what make two skills collide in a merge."""
    from peft import PeftModel

    from tunesmith.models.load import load_model

    deltas = []
    for folder in (a, b):
        model = PeftModel.from_pretrained(load_model(str(base), dtype="fp32"), str(folder / "adapter"))
        deltas.append({name: (m.get_delta_weight("default"), m.base_layer.weight) for name, m in model.named_modules()
                       if hasattr(m, "get_delta_weight") and "default" in getattr(m, "lora_A", {})})
    cosines, sizes = [], []
    for name, (da, w) in deltas[0].items():
        db = deltas[1][name][0]
        cosines.append(float(torch.nn.functional.cosine_similarity(da.flatten(), db.flatten(), dim=0)))
        sizes += [float(da.norm() / w.norm()), float(db.norm() / w.norm())]
    return sum(cosines) / len(cosines), sum(sizes) / len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/merge-skills"))
    parser.add_argument("--base-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps of each skill's adapter")
    parser.add_argument("--heldout", type=int, default=100, help="held-out rows per skill")
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--weights", default="1,1")
    parser.add_argument("--hidden", type=int, default=64, help="the tiny Llama's width (intermediate: 2.7x)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3, help="the adapters' learning rate")
    args = parser.parse_args()
    started = time.time()
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    base_rows = make_rows(6000, (BASE_SKILL,), seed=1)
    # each adapter's data: its skill, and the base's skill as replay, so it learns to act on its own instruction only
    skill_rows = {k: make_rows(4000, (skill, BASE_SKILL), seed=10 + i) for i, (k, skill) in enumerate(SKILLS.items())}
    corpus = [f"{r['instruction']}\n{r['output']}" for rows in (base_rows, *skill_rows.values()) for r in rows[:150]]
    tiny = save_tiny("llama", work / "tiny", vocab_size=320, texts=[*corpus, "User: Assistant: "], hidden=args.hidden,
                     layers=args.layers, heads=4, kv_heads=2, intermediate=int(args.hidden * 2.7))
    runs = work / "runs"
    base = train(_recipe("base", tiny, _write(work / "data" / "base.jsonl", base_rows), runs, "full", 3e-3,
                         args.base_steps), advice=False).path / "model"
    singles = {k: train(_recipe(f"skill-{k}", base, _write(work / "data" / f"{k}.jsonl", rows), runs, "lora", args.lr,
                                args.steps, args.rank), advice=False).path for k, rows in skill_rows.items()}
    heldout = {k: make_rows(args.heldout, (skill,), seed=100 + i) for i, (k, skill) in enumerate(SKILLS.items())}
    weights = [float(w) for w in args.weights.split(",")]
    targets = {"base (no adapter)": base, **{f"adapter {k} alone": path for k, path in singles.items()}}
    for method in METHODS:
        density = None if method in ("linear", "cat", "svd") else args.density
        targets[f"merge: {method}"] = combine_runs([singles["A"], singles["B"]], method, weights, density,
                                                    runs / f"merged-{method}").out
    scores = {name: {k: exact_match(path, heldout[k]) for k in SKILLS} for name, path in targets.items()}
    _print_table(scores, args, weights, time.time() - started)
    cosine, size = update_overlap(base, singles["A"], singles["B"])
    print(f"\nthe two adapters' updates: mean cosine {cosine:.2f} per module, mean size {size:.0%} of the base weight")


def _print_table(scores: dict[str, dict[str, float]], args: argparse.Namespace, weights: list[float],
                 seconds: float) -> None:
    single = {k: scores[f"adapter {k} alone"][k] for k in SKILLS}
    print(f"\nexact match on {args.heldout} held-out rows per skill; A = {SKILLS['A']!r}, B = {SKILLS['B']!r}; "
          f"Llama {args.layers} x {args.hidden}, LoRA r {args.rank}, lr {args.lr}, {args.steps} steps; merges: weights "
          f"{weights}, density {args.density}; {seconds:.0f} s in all\n")
    print("| model | skill A | skill B | A retained | B retained | both >= 80% |")
    print("| --- | ---: | ---: | ---: | ---: | :---: |")
    for name, row in scores.items():
        kept = {k: row[k] / single[k] if single[k] else float("nan") for k in SKILLS}
        ok = "yes" if all(v >= 0.8 for v in kept.values()) else "no"
        print(f"| {name} | {row['A']:.0%} | {row['B']:.0%} | {kept['A']:.0%} | {kept['B']:.0%} | "
              f"{ok if name.startswith('merge') else ''} |")


if __name__ == "__main__":
    main()
