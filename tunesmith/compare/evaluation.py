"""Evaluate every strategy and the base model with the same prompts, items and settings.

The base model is scored once (into the comparison folder's base/eval.json, its per-item records into
base/eval_samples.jsonl), not once per strategy; each strategy's eval.json and eval_samples.jsonl land in its
run folder, as `tunesmith eval RUN` would write them. The same items, so each strategy's change is paired.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tunesmith.compare.spec import CompareEval
from tunesmith.evaluate.samples import write_samples
from tunesmith.runs.eval_file import read_eval, write_eval

BASE_NAME = "base model"
"""How the base is labelled while it is scored and in base/eval.json."""


def eval_options(run_dir: Path, settings: CompareEval, out: Path) -> Any:
    from tunesmith.evaluate.run_eval import EvalOptions

    return EvalOptions(target=str(run_dir), suites=settings.suite, limit=settings.limit, shots=settings.shots,
                       data_dir=settings.data_dir, ppl_file=settings.ppl_file, out=str(out),
                       batch_size=settings.batch_size, max_new_tokens=settings.max_new_tokens)


def evaluate_run(run_dir: Path, settings: CompareEval) -> dict[str, Any]:
    """eval.json of one trained strategy (computed unless already there)."""
    done = read_eval(run_dir)
    if done is not None:
        return done
    from tunesmith.evaluate.run_eval import run_eval

    return run_eval(eval_options(run_dir, settings, run_dir)).record


def evaluate_base(any_run: Path, settings: CompareEval, folder: Path) -> dict[str, Any]:
    """The base model's results on the same suites (its held-out set is the run's split, the same for all)."""
    out = folder / "base"
    done = read_eval(out)
    if done is not None:
        return done
    from tunesmith.evaluate.run_eval import make_plan, score
    from tunesmith.runs.targets import resolve_target

    options = eval_options(any_run, settings, out)
    target = resolve_target(str(any_run), None)
    base = replace(target.base(), name=BASE_NAME)  # not "<first strategy> (base)": it is every strategy's base
    results, _, outcomes = score(base, make_plan(options, target), options)
    record = {"target": {"name": BASE_NAME, "model": base.model}, "results": results,
              "settings": {"suites": settings.suite, "limit": settings.limit}}
    out.mkdir(parents=True, exist_ok=True)
    write_samples(out, {}, {suite: o.samples for suite, o in outcomes.items() if o.samples})
    write_eval(out, record)
    return record
