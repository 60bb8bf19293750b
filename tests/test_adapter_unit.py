"""The adapter unit: every fact about an adapter kind lives in its record (tunesmith/adapters/kinds/), so no
module outside tunesmith/adapters/ compares an adapter's name; and one reader tells a saved folder's kind."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tunesmith.adapters.folder import read_kind
from tunesmith.adapters.kinds import BY_NAME, KINDS, NAMES, adapter_kind
from tunesmith.adapters.kinds.bottleneck import CONFIG_FILE as BOTTLENECK_CONFIG
from tunesmith.adapters.unit import Serving
from tunesmith.errors import UserError
from tunesmith.recipe.registry import ADAPTERS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tunesmith"
UNIT_HOME = PACKAGE / "adapters"
COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)
ADAPTERISH = ("adapter", "kind")
"""A comparison is about an adapter when its other side names one (`recipe.adapter`, `spec.kind`, `kind`):
that keeps words shared with other vocabularies ("prompt" the data field, "full" the word) out of the check."""


def _constant_names(node: ast.AST | None, constants: dict[str, set[str]]) -> set[str]:
    """The adapter names a comparison operand spells: a string, a tuple/list/set of them (starred parts
    skipped), or a module-level constant bound to adapter names."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & set(NAMES)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_constant_names(e, constants) for e in node.elts)) if node.elts else set()
    if isinstance(node, ast.Name):
        return constants.get(node.id, set())
    return set()


def _adapterish(node: ast.AST) -> bool:
    text = ast.unparse(node).lower()
    return any(word in text for word in ADAPTERISH)


def _name_constants(tree: ast.Module) -> dict[str, set[str]]:
    """Module-level names bound to a collection made only of adapter names (`MERGEABLE = ("lora", "ia3")`)."""
    found = {}
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if not isinstance(value, (ast.Tuple, ast.List, ast.Set)) or not value.elts:
            continue
        names = _constant_names(value, {})
        if len(names) == len(value.elts):
            found |= {t.id: names for t in targets if isinstance(t, ast.Name)}
    return found


def name_comparisons(source: str) -> list[str]:
    """Each comparison of an adapter-ish expression with adapter names in `source`, as 'line: code'."""
    tree = ast.parse(source)
    constants = _name_constants(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:]):
                if isinstance(op, COMPARISONS) and (
                        (_constant_names(right, constants) and _adapterish(left))
                        or (_constant_names(left, constants) and _adapterish(right))):
                    found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Match) and _adapterish(node.subject):
            values = [p for case in node.cases for p in ast.walk(case.pattern) if isinstance(p, ast.MatchValue)]
            if any(_constant_names(p.value, constants) for p in values):
                found.append(f"{node.lineno}: match {ast.unparse(node.subject)}")
    return found


def test_no_module_outside_the_unit_compares_adapter_names() -> None:
    """Producing a name is fine (the advisor writes `adapter: lora` into recipes); branching on one is not:
    ask the kind's record (`recipe.adapter_kind.merges`, `spec.serving`, ...)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if UNIT_HOME in path.parents:
            continue
        offenders += [f"{path.relative_to(ROOT)}:{hit}" for hit in name_comparisons(path.read_text())]
    assert not offenders, "compare the adapter's record, not its name:\n" + "\n".join(offenders)


@pytest.mark.parametrize("code", [
    'if recipe.adapter == "full": pass',
    'x = "qlora" != info.adapter',
    'ok = spec.kind in ("lora", "dora")',
    'ok = kind not in ("model", "lora")',
    'ok = [kind for kind in adapters if kind != "lora"]',
    'STEPWISE = ("prefix", "prompt")\nok = entry.spec.kind in STEPWISE',
    'match recipe.adapter:\n    case "prefix" | "prompt":\n        pass',
])
def test_the_guard_flags_a_name_comparison(code: str) -> None:
    assert name_comparisons(code), code


@pytest.mark.parametrize("code", [
    'if row.get("prompt") is not None: pass',
    'ok = field == "prompt"',
    'ok = device.kind == "cuda"',
    'ok = spec.kind == "model"',
    'FORMATS = ("text", "prompt")\nok = data_format in FORMATS',
    'ok = recipe.adapter_kind.trains_base',
    'TrainSetup(adapter="lora")',
])
def test_the_guard_leaves_other_vocabularies_alone(code: str) -> None:
    assert not name_comparisons(code), code


def test_the_registry_is_the_recipes_list_and_each_record_is_whole() -> None:
    assert NAMES == ADAPTERS and len(set(NAMES)) == len(KINDS)
    for kind in KINDS:
        assert (kind.peft_config is None) != (kind.wrap is None), f"{kind.name}: PEFT's or its own, not both"
        assert kind.prompt_learning == (kind.serving is Serving.STEPWISE), kind.name
        assert kind.trains_base == (kind.serving is Serving.MODEL), kind.name
        assert kind.merges or kind.trains_base or kind.merge_refusal, f"{kind.name}: say why it cannot merge"
        assert all(name in BY_NAME for name in kind.memory.lighter), kind.name
        assert (kind.save is None) == (kind.load is None) == (kind.config_file == "adapter_config.json"), kind.name


def test_an_unknown_adapter_name_is_a_user_error_listing_the_kinds() -> None:
    assert adapter_kind("dora") is BY_NAME["dora"]
    with pytest.raises(UserError, match="adapter: 'lorra' is unknown; use one of: lora, qlora"):
        adapter_kind("lorra")


def _folder(tmp_path: Path, config: object, name: str = "adapter_config.json") -> Path:
    (tmp_path / name).write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(("config", "kind"), [
    ({"peft_type": "LORA", "r": 8}, "lora"),
    ({"peft_type": "LORA", "use_dora": False}, "lora"),
    ({"peft_type": "LORA", "use_dora": True}, "dora"),
    ({"peft_type": "IA3"}, "ia3"),
    ({"peft_type": "PREFIX_TUNING"}, "prefix"),
    ({"peft_type": "PROMPT_TUNING"}, "prompt"),
])
def test_the_folder_reader_knows_each_peft_kind(tmp_path: Path, config: dict, kind: str) -> None:
    assert read_kind(_folder(tmp_path, config)) is BY_NAME[kind]


def test_the_folder_reader_knows_the_bottleneck_by_its_own_file(tmp_path: Path) -> None:
    assert read_kind(_folder(tmp_path, {"format": "tunesmith-bottleneck"}, BOTTLENECK_CONFIG)) is BY_NAME["bottleneck"]


def test_an_unknown_adapter_type_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="adapter type UNHEARD_OF is not one tunesmith trains or serves"):
        read_kind(_folder(tmp_path, {"peft_type": "UNHEARD_OF"}))
    with pytest.raises(UserError, match="adapter type None"):
        read_kind(_folder(tmp_path, {"r": 8}))


def test_a_folder_without_an_adapter_or_with_a_broken_config_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no adapter"):
        read_kind(tmp_path)
    with pytest.raises(UserError, match="cannot read"):
        read_kind(_broken(tmp_path))
    with pytest.raises(UserError, match="not an object"):
        read_kind(_folder(tmp_path, ["LORA"]))


def _broken(tmp_path: Path) -> Path:
    (tmp_path / "adapter_config.json").write_text("{not json")
    return tmp_path


def test_both_target_resolvers_read_kinds_through_the_one_reader(tmp_path: Path) -> None:
    """runs/targets.py (eval, chat, compare) and serve/targets.py agree, unknown types included."""
    from tunesmith.runs.targets import resolve_target
    from tunesmith.serve.targets import adapter_spec

    folder = _folder(tmp_path, {"peft_type": "LORA", "use_dora": True, "base_model_name_or_path": "/base"})
    (folder / "adapter_model.safetensors").write_bytes(b"")
    assert resolve_target(str(folder)).adapter_kind == adapter_spec("x", folder).kind == "dora"
    _folder(tmp_path, {"peft_type": "UNHEARD_OF", "base_model_name_or_path": "/base"})
    for read in (lambda: resolve_target(str(folder)), lambda: adapter_spec("x", folder)):
        with pytest.raises(UserError, match="adapter type UNHEARD_OF is not one tunesmith trains or serves"):
            read()
