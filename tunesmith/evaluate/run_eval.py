"""`tunesmith eval TARGET`: score a model on the chosen suites, optionally its base model too, and gate.

Reads top to bottom: resolve the target (run folder, adapter, model folder, hub id) and the settings
(command line over the run's `eval:` recipe block), decide the suites and find their data before loading
any weights, score the target and then the base with the same prompts, compare, write eval.json and
report.html, print the table. `EvalOutcome.failures` lists general scores that fell more than `max_drop`
points; the CLI turns them into exit status 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from tunesmith.data.tokenize import tokenize_prompt
from tunesmith.data.types import Message
from tunesmith.errors import UserError, suggestion
from tunesmith.evaluate import benchmarks
from tunesmith.evaluate.benchmarks import BENCHMARK_NAMES, Outcome, RunSettings, locate
from tunesmith.evaluate.forgetting import GATE_RULES, Delta, compare, gate
from tunesmith.evaluate.generate import generate
from tunesmith.evaluate.heldout import HeldoutSet, heldout_from_file, heldout_from_run, heldout_metrics, text_perplexity
from tunesmith.evaluate.judge import (
    JudgeClient,
    JudgeQuestion,
    compare_answers,
    grade_answers,
    load_questions,
    served_model,
)
from tunesmith.evaluate.judge_endpoint import judge_endpoint, judge_key
from tunesmith.evaluate.options import EvalOptions, recipe_values
from tunesmith.evaluate.samples import write_samples
from tunesmith.evaluate.vision_heldout import vision_heldout
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.registry import EVAL_SUITES
from tunesmith.recipe.spec import EvalSpec
from tunesmith.runs.eval_file import write_eval
from tunesmith.runs.load import LoadedTarget, load_target
from tunesmith.runs.report import write_report
from tunesmith.runs.targets import Target, resolve_target

console = Console(stderr=True)


@dataclass
class Plan:
    """What to run, with every input found and read before any model is loaded."""

    suites: list[str]
    benchmarks: dict[str, Any] = field(default_factory=dict)
    heldout: HeldoutSet | None = None
    ppl_file: str | None = None
    judge: JudgeClient | None = None
    judge_needed: bool = False
    questions: list[JudgeQuestion] = field(default_factory=list)


@dataclass
class EvalOutcome:
    path: Path
    record: dict[str, Any]
    deltas: list[Delta]
    failures: list[str]
    report: Path | None = None


def run_eval(options: EvalOptions) -> EvalOutcome:
    """Evaluate `options.target` (and its base with --base or a max_drop), write eval.json and report.html."""
    started = time.perf_counter()
    target = resolve_target(options.target, options.template)
    if options.template and target.run is not None:
        raise UserError("--template applies to plain models; a run uses its own (data.template in its run.json)")
    options = _with_recipe_defaults(options, target)
    base = target.base() if options.base or options.max_drop is not None else None
    plan = make_plan(options, target)
    gated = benchmarks.gated_metrics()
    if options.max_drop is not None and not set(plan.suites) & set(gated):
        console.print(f"[yellow]warning:[/] max_drop {options.max_drop:g} gates the general benchmarks "
                      f"({', '.join(gated)}), and none of them is in --suite: the gate checks nothing")
    if options.gate_rule not in GATE_RULES:
        raise UserError(f"--gate-rule: '{options.gate_rule}' is not one of {', '.join(GATE_RULES)}")
    results, answers, samples = score(target, plan, options)
    base_results: dict[str, Any] | None = None
    base_samples: dict[str, Outcome] = {}
    if base is not None:
        base_results, base_answers, base_samples = score(base, plan, options)
        if "judge" in plan.suites:
            results["judge_pairwise"] = compare_answers(plan.judge, plan.questions, answers, base_answers)
        _pairwise(plan, options, samples, base_samples, results)
    deltas = (compare(results, base_results, _records(samples), _records(base_samples))
              if base_results is not None else [])
    failures, notes = gate(deltas, options.max_drop, options.gate_rule) if options.max_drop is not None else ([], [])
    record = {
        "target": _describe(target), "base": _describe(base) if base else None,
        "settings": {"suites": plan.suites, "limit": options.limit, "shots": options.shots, "dtype": options.dtype,
                     "max_drop": options.max_drop, "gate_rule": options.gate_rule},
        "results": results, "base_results": base_results, "deltas": [d.as_dict() for d in deltas],
        "gate": {"max_drop": options.max_drop, "rule": options.gate_rule, "failures": failures, "notes": notes},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(options.out) if options.out else target.default_out()
    out.mkdir(parents=True, exist_ok=True)
    path = write_eval(out, record)
    if samples:
        write_samples(out, _records(samples), _records(base_samples))
    report = write_report(out)
    return EvalOutcome(path, record, deltas, failures, report)


def _with_recipe_defaults(options: EvalOptions, target: Target) -> EvalOptions:
    """Fill options left unset from the run's `eval:` recipe block (command line wins)."""
    raw = (target.run.recipe.get("eval") if target.run else None) or {}
    try:
        spec = EvalSpec.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"the eval: block of {target.run_dir}/run.json is invalid: {e}") from None
    endpoint = judge_endpoint(options.judge_url, options.judge_key_env, raw.get("judge"), f"{target.run_dir}/run.json")
    for warning in endpoint.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return replace(options, **recipe_values(options, spec), judge_url=endpoint.url, judge_key_env=endpoint.key_env)


def make_plan(options: EvalOptions, target: Target) -> Plan:
    """Decide the suites and read their inputs; a requested suite without its input is a UserError."""
    data_dir = Path(options.data_dir) if options.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir: folder not found: {data_dir}")
    sources = {name: locate(name, getattr(options, name, None), data_dir) for name in BENCHMARK_NAMES}
    has_heldout = options.heldout is not None or target.run is not None
    has_judge = bool(options.judge_url and options.judge_questions)
    judged = {name for name in BENCHMARK_NAMES if benchmarks.get(name).needs_judge}
    if options.suites is None:
        available = {"heldout": has_heldout, "ppl": bool(options.ppl_file), "judge": has_judge,
                     **{name: sources[name] is not None and (name not in judged or bool(options.judge_url))
                        for name in BENCHMARK_NAMES}}
        suites = [s for s in EVAL_SUITES if available[s]]
        if not suites:
            raise UserError("nothing to evaluate: name a --suite and give its data (--data-dir DIR for the "
                            "benchmarks, --heldout FILE, --ppl-file FILE, --judge-url URL with --judge-questions FILE)")
    else:
        suites = list(dict.fromkeys(options.suites))
    for suite in suites:
        if suite not in EVAL_SUITES:
            raise UserError(f"--suite: unknown suite '{suite}'{suggestion(suite, EVAL_SUITES)}; "
                            f"choose from {', '.join(EVAL_SUITES)}")
    plan = Plan(suites)
    for suite in suites:
        if suite in BENCHMARK_NAMES:
            if sources[suite] is None:
                raise UserError(f"--suite {suite} needs its data: --data-dir DIR holding "
                                f"{benchmarks.get(suite).data_glob} (or --{suite} PATH where there is such an option)")
            plan.benchmarks[suite] = benchmarks.get(suite).load(sources[suite])
            plan.judge_needed |= suite in judged
        elif suite == "heldout":
            plan.heldout = _heldout(options, target)
        elif suite == "ppl":
            if not options.ppl_file:
                raise UserError("--suite ppl needs --ppl-file FILE (raw text, e.g. tinystories_valid_head.txt)")
            plan.ppl_file = options.ppl_file
        else:
            plan.judge, plan.questions = _judge(options)
    if plan.judge_needed and plan.judge is None:
        plan.judge = judge_client(options)
    return plan


def _heldout(options: EvalOptions, target: Target) -> HeldoutSet:
    if options.heldout is not None:
        return heldout_from_file(options.heldout)
    if target.run is None:
        raise UserError("--suite heldout on a plain model needs --heldout FILE (a chat-format data file)")
    return heldout_from_run(target, load_tokenizer(target.tokenizer_source))


def _judge(options: EvalOptions) -> tuple[JudgeClient, list[JudgeQuestion]]:
    if not options.judge_questions:
        raise UserError('--suite judge needs --judge-questions FILE '
                        '(JSONL of {"question": ..., "reference": optional})')
    return judge_client(options), load_questions(options.judge_questions)


def judge_client(options: EvalOptions) -> JudgeClient:
    """The judge endpoint; without --judge-model, the first model the endpoint lists (/v1/models)."""
    if not options.judge_url:
        raise UserError("--suite judge and --suite mtbench need --judge URL (an OpenAI-compatible endpoint, "
                        "e.g. http://127.0.0.1:8000/v1) or TUNESMITH_JUDGE_URL; a run folder's eval.judge.url is not used")
    key = judge_key(options.judge_key_env)
    model = options.judge_model or served_model(options.judge_url, key)
    return JudgeClient(options.judge_url, model, api_key=key)


def score(target: Target, plan: Plan, options: EvalOptions) -> tuple[dict[str, Any], list[str], dict[str, Outcome]]:
    """Every suite of `plan` on `target`: results by suite, its answers to the judge's questions, and the
    benchmarks' outcomes (with their per-item records)."""
    loaded = load_target(target, options.dtype)
    results: dict[str, Any] = {}
    answers: list[str] = []
    outcomes: dict[str, Outcome] = {}
    for suite in plan.suites:
        started = time.perf_counter()
        if suite in BENCHMARK_NAMES:
            outcomes[suite] = benchmarks.get(suite).run(loaded.model, loaded.tokenizer, plan.benchmarks[suite],
                                                        _settings(suite, options, loaded, plan))
            result = outcomes[suite].result
        elif suite == "heldout" and loaded.processor is not None:  # image chats, scored item by item
            outcomes[suite] = vision_heldout(loaded.model, loaded.processor, plan.heldout, limit=options.limit,
                                             batch_size=options.batch_size, max_new_tokens=options.max_new_tokens)
            result = outcomes[suite].result
        elif suite == "heldout":
            result = heldout_metrics(loaded.model, loaded.tokenizer, plan.heldout, end_of_turn=loaded.end_of_turn,
                                     limit=options.limit, batch_size=options.batch_size,
                                     max_new_tokens=options.max_new_tokens)
        elif suite == "ppl":
            result = text_perplexity(loaded.model, loaded.tokenizer, plan.ppl_file, limit=options.limit,
                                     batch_size=options.batch_size)
        else:
            answers = answer_questions(loaded, plan.questions, options)
            result = grade_answers(plan.judge, plan.questions, answers)
        result["seconds"] = round(time.perf_counter() - started, 2)
        results[suite] = result
        console.print(f"{target.name}: {suite} done in {result['seconds']:.1f} s")
    return results, answers, outcomes


def _settings(suite: str, options: EvalOptions, loaded: LoadedTarget, plan: Plan) -> RunSettings:
    shots = benchmarks.get(suite).shots if options.shots is None else options.shots
    return RunSettings(limit=options.limit, shots=shots, batch_size=options.batch_size,
                       max_new_tokens=options.max_new_tokens, end_of_turn=loaded.end_of_turn, judge=plan.judge)


def _pairwise(plan: Plan, options: EvalOptions, tuned: dict[str, Outcome], base: dict[str, Outcome],
              results: dict[str, Any]) -> None:
    """Benchmarks that compare answers (MT-Bench) judge tuned against base; the result joins the tuned's."""
    for suite, outcome in tuned.items():
        if suite not in BENCHMARK_NAMES:  # a VLM's held-out items: paired by forgetting.compare alone
            continue
        unit = benchmarks.get(suite)
        if unit.compare is not None and suite in base:
            settings = RunSettings(limit=options.limit, shots=0, judge=plan.judge)
            results[suite]["pairwise"] = unit.compare(outcome, base[suite], settings)


def _records(outcomes: dict[str, Outcome]) -> dict[str, list[dict[str, Any]]]:
    return {suite: outcome.samples for suite, outcome in outcomes.items() if outcome.samples}


def answer_questions(loaded: LoadedTarget, questions: list[JudgeQuestion], options: EvalOptions) -> list[str]:
    """Greedy answers under the chat template, for the judge."""
    prompts = [tokenize_prompt(loaded.tokenizer, [Message("user", q.question)]) for q in questions]
    outputs = generate(loaded.model, loaded.tokenizer, prompts, max_new_tokens=options.max_new_tokens,
                       stop=[loaded.end_of_turn], batch_size=options.batch_size)
    return [out.strip() for out in outputs]


def _describe(target: Target) -> dict[str, Any]:
    return {"name": target.name, "model": target.model, "adapter": str(target.adapter) if target.adapter else None,
            "template": target.template, "run_dir": str(target.run_dir) if target.run_dir else None}
