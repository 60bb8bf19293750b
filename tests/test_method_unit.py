"""A method is one unit: its facts live in its record (methods/unit.py), and no other module decides anything
by comparing a method's name. Checked on the source (AST) and on behaviour: the planner and the objectives
agree with what each record says."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tunesmith.methods import BY_NAME, METHOD_NAMES, METHODS
from tunesmith.methods.unit import Method
from tunesmith.plan.hardware import memory_device
from tunesmith.plan.run import plan_recipe
from tunesmith.plan.shape import shape_from_count
from tunesmith.recipe.spec import recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tunesmith"
NAMED_ELSEWHERE = {
    ("tunesmith/data/report.py", "kto"): "the data format `kto` (data/formats.py), not the method",
    ("tunesmith/advise/__init__.py", "cpt"): "the advisor reads back the steps it chose itself, to word its notes",
    ("tunesmith/advise/__init__.py", "dpo"): "the advisor reads back the steps it chose itself, to word its notes",
}
"""(file, name) -> why a comparison with that string there is no decision about a method."""


def unit_folder(method: Method) -> Path:
    """The folder of a method's unit: where its record (and its objective loader) is defined."""
    return ROOT.joinpath(*method.objective.__module__.split("."))


def _names_in(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value in METHOD_NAMES}


def method_name_comparisons(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, method name, other side mentions `method`) for every ==, !=, in, not in and `case` that has
    a method's name on one side, and for every tuple, list or set of method names (kept to compare with)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                 for op in node.ops):
            sides = [node.left, *node.comparators]
            for i, side in enumerate(sides):
                others = " ".join(ast.unparse(s) for j, s in enumerate(sides) if j != i)
                found += [(node.lineno, name, "method" in others.lower()) for name in _names_in(side)]
        elif isinstance(node, ast.Match):
            subject = "method" in ast.unparse(node.subject).lower()
            found += [(case.pattern.lineno, name, subject) for case in node.cases for name in _names_in(case.pattern)]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) > 1 and all(
                isinstance(e, ast.Constant) and e.value in METHOD_NAMES for e in node.elts):
            found += [(node.lineno, name, True) for name in _names_in(node)]  # a list of methods, kept to compare with
    return found


def offences(path: Path, source: str) -> list[str]:
    """Comparisons with a method's name outside that method's unit, unless NAMED_ELSEWHERE says why. Inside
    another method's unit only comparisons with the method count: a unit's own words may be spelled like a
    method (dpo's `loss: ipo` variant)."""
    where = path.relative_to(ROOT).as_posix()
    in_a_unit = any(path.is_relative_to(unit_folder(m)) for m in METHODS)
    bad = []
    for line, name, method_ish in method_name_comparisons(ast.parse(source)):
        if path.is_relative_to(unit_folder(BY_NAME[name])) or (where, name) in NAMED_ELSEWHERE:
            continue
        if in_a_unit and not method_ish:
            continue
        kind = "compares the method" if method_ish else "compares a method's name (add a reason to NAMED_ELSEWHERE?)"
        bad.append(f"{where}:{line}: {kind} with '{name}'; ask its record (methods/unit.py) instead")
    return bad


def test_no_module_compares_a_method_name_outside_its_unit() -> None:
    bad = [o for path in sorted(PACKAGE.rglob("*.py")) for o in offences(path, path.read_text())]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("snippet", [
    'if recipe.method in ("dpo", "kto"):\n    pass\n',
    'reference = s.method == "ppo"\n',
    'match recipe.method:\n    case "grpo":\n        pass\n',
    'packed = "sft" not in methods\n',
    'REFERENCE_METHODS = ("dpo", "kto", "ppo")\n',
])
def test_the_check_catches_a_name_comparison(snippet: str) -> None:
    assert offences(PACKAGE / "plan" / "memory.py", snippet)


def test_the_check_leaves_a_unit_its_own_name_and_other_words_alone() -> None:
    assert not offences(PACKAGE / "methods" / "dpo" / "objective.py", 'x = recipe.method == "dpo"\n')
    assert not offences(PACKAGE / "methods" / "dpo" / "losses.py", 'x = loss == "kto"\n')
    assert offences(PACKAGE / "methods" / "dpo" / "losses.py", 'x = recipe.method == "kto"\n')
    assert not offences(PACKAGE / "plan" / "memory.py", 'x = "dpo"\ny = row["answer"] == "yes"\n')


def test_registration_imports_nothing_by_string() -> None:
    """Every table is a tuple of imported records: no module is looked up from a name at run time."""
    calls = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in PACKAGE.rglob("*.py")
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
             and ast.unparse(node.func).split(".")[-1] in ("import_module", "__import__")]
    assert not calls, calls


def test_each_record_builds_the_objective_of_its_own_unit() -> None:
    for method in METHODS:
        objective = method.objective()
        assert objective.__module__.startswith(method.objective.__module__ + "."), method.name
        assert (unit_folder(method) / "__init__.py").is_file() and (unit_folder(method) / "objective.py").is_file()


# ---- the facts agree with behaviour -------------------------------------------------------------------

BLOCKS = {"grpo": {"rewards": ["exact_match"], "group_size": 4, "max_new_tokens": 3},
          "ppo": {"rewards": ["exact_match"], "max_new_tokens": 3}}


def recipe_for(method: Method, adapter: str = "lora", batch_size: int = 2, **extra: object):
    return recipe_from_dict({
        "name": method.name, "model": "m", "method": method.name, "adapter": adapter,
        "data": {"train": "t"}, "train": {"batch_size": batch_size, "max_seq_len": 32, "mixed_precision": "no"},
        **({method.name: BLOCKS[method.name]} if method.name in BLOCKS else {}), **extra,
    })


@pytest.mark.parametrize("method", METHODS, ids=METHOD_NAMES)
def test_the_plan_counts_a_reference_copy_only_for_methods_that_need_one(method: Method) -> None:
    plan = plan_recipe(recipe_for(method, adapter="full"), memory_device("80GB", flops=1e12),
                       shape=shape_from_count(50_000_000))
    assert (plan.without.parts["reference"] > 0) == method.needs_reference
    assert plan.setup.rows == method.sequences(recipe_for(method)) * 2


@pytest.mark.parametrize("method", METHODS, ids=METHOD_NAMES)
def test_the_plan_says_when_its_time_leaves_out_sampling(method: Method) -> None:
    from rich.console import Console

    from tunesmith.plan.report import print_time
    from tunesmith.plan.timing import DataSize

    plan = plan_recipe(recipe_for(method), memory_device("80GB", flops=1e12), shape=shape_from_count(50_000_000),
                       size=DataSize(tokens=32_000, samples=1000))
    console = Console(record=True, width=200)
    print_time(plan, console)
    assert plan.time is not None and plan.time.sampling_left_out == method.generates_rollouts
    assert ("leave out sampling the rollouts" in console.export_text()) == method.generates_rollouts


def test_a_reference_costs_memory_for_the_same_pairs() -> None:
    device, shape = memory_device("80GB", flops=1e12), shape_from_count(50_000_000)
    dpo, orpo = (plan_recipe(recipe_for(BY_NAME[name]), device, shape=shape) for name in ("dpo", "orpo"))
    assert dpo.setup.rows == orpo.setup.rows
    assert dpo.without.parts["logits"] > orpo.without.parts["logits"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from tunesmith.testing.tiny import save_tiny

    root = tmp_path_factory.mktemp("units")
    words = ("cat", "dog", "sun", "tree", "ball", "bird", "fish", "hat")
    pairs, prompts = root / "pairs.jsonl", root / "prompts.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Say {w}", "chosen": f"{w}.", "rejected": f"No {w}"}) + "\n"
                             for w in words))
    prompts.write_text("".join(json.dumps({"prompt": f"Say {w}", "answer": w}) + "\n" for w in words))
    return save_tiny("llama", root / "base", vocab_size=300), pairs, prompts


EXAMPLE_METHODS = [m for m in METHODS if not m.trains_on_samples]


@pytest.mark.parametrize("method", EXAMPLE_METHODS, ids=[m.name for m in EXAMPLE_METHODS])
def test_a_micro_batch_holds_the_sequences_the_record_says(method: Method, tiny, tmp_path: Path) -> None:
    """What the planner multiplies by (sequences_per_unit) is what the objective forwards, and a reference
    exists exactly where the record says one is needed (each method's default settings)."""
    from tunesmith.train.loop import build_trainer

    model, pairs, prompts = tiny
    r = recipe_for(method, model=str(model), output=str(tmp_path), data={
        "train": str(prompts if "prompt" in method.formats else pairs), "eval": 0.0, "template": "plain"},
        model_options={"dtype": "fp32"}, train={"batch_size": 2, "max_steps": 1, "max_seq_len": 32,
                                                "mixed_precision": "no"})
    trainer = build_trainer(r, overwrite=True)
    batch = trainer.objective.step_batches(0, trainer.model)[0]
    assert batch["input_ids"].shape[0] == method.sequences(r) * r.train.batch_size
    assert (getattr(trainer.objective, "reference", None) is not None) == method.needs_reference
