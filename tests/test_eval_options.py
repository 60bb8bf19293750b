"""`tunesmith eval`'s options are declared once (evaluate/options.py): the command line is built from them and
a run's eval: block fills exactly the ones left unset."""

from __future__ import annotations

import functools
from dataclasses import fields

import typer.main
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.evaluate.options import EvalOptions, recipe_values
from tunesmith.recipe.spec import EvalSpec, JudgeSpec


def test_every_field_is_a_command_line_option_and_names_a_real_recipe_field() -> None:
    command = typer.main.get_command(app).commands["eval"]
    flags = {param.name: param.opts for param in command.params}
    for option in fields(EvalOptions):
        assert flags[option.name] == list(option.metadata.get("flags") or [option.name])
        if option.metadata.get("recipe"):
            functools.reduce(getattr, option.metadata["recipe"].split("."), EvalSpec())  # AttributeError if not


def test_recipe_fills_only_what_the_command_line_left_unset() -> None:
    spec = EvalSpec(suite=["mmlu"], limit=5, shots=3, max_drop=2.0, data_dir="d", judge=JudgeSpec(model="m"))
    given = EvalOptions(target="run", suites=["ppl"], shots=0, max_drop=0.0, judge_questions="q.jsonl")
    assert recipe_values(given, spec) == {"limit": 5, "data_dir": "d", "judge_model": "m"}
    assert recipe_values(EvalOptions(target="run", suites=[], limit=0), spec)["suites"] == ["mmlu"]


def test_the_command_hands_typed_options_to_the_evaluation(monkeypatch) -> None:
    seen: list[EvalOptions] = []
    monkeypatch.setattr("tunesmith.evaluate.run_eval.run_eval", lambda options: seen.append(options) or _stop())
    result = CliRunner().invoke(app, ["eval", "some/run", "--suite", "ppl, mmlu", "--shots", "0", "--judge", "http://j"])
    assert result.exit_code == 9, result.output
    assert seen == [EvalOptions(target="some/run", suites=["ppl", "mmlu"], shots=0, judge_url="http://j")]


def _stop() -> None:
    raise SystemExit(9)
