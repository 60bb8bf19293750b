"""Reward functions for GRPO and PPO: the built-ins (REWARDS, their one table), and users' own.

A reward function has TRL's signature, so functions written for TRL work here unchanged:

    def my_reward(prompts: list[str], completions: list[str], **fields) -> list[float]

`prompts` holds each row's last user message, `completions` the sampled answers as text, and `fields`
every other column of the rows (one list per column, aligned with the completions; None where a row lacks
it). A user's functions live in a file given on the command line (`tunesmith train R.yaml --rewards-file
my_rewards.py`); the recipe names them `my_rewards:function` or `function` (recipe/user_code.py says why a recipe
cannot import modules or files itself).

Built-ins (their answer comes from the row field `reward_field`, default `answer`; a GSM8K answer
"... #### 42" counts as "42"):
    exact_match     1 if the completion's first line equals the answer (case, spaces, end punctuation aside)
    starts_with     1 if the completion starts with the answer as a whole word ("Sue went..." for "Sue")
    numeric_match   1 if the completion's number (after "####" if it writes one, else its last) equals the answer's
    regex           1 if `pattern` is found in the completion (a format check)
    length_penalty  -(characters beyond max_chars) / max_chars, 0 up to max_chars (default 200)
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tunesmith.data.types import Prompt
from tunesmith.errors import UserError
from tunesmith.recipe.user_code import OPTION

if TYPE_CHECKING:
    import torch

    from tunesmith.methods.rollout_spec import RewardFnSpec

RewardFn = Callable[..., list[float]]
"""fn(prompts=..., completions=..., **fields) -> one float per completion."""

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass(frozen=True)
class RewardTerm:
    """One named, weighted term of the total reward; `fn` scores rows and their completions."""

    name: str
    weight: float
    fn: Callable[[list[Prompt], list[str]], list[float]]


def gsm8k_answer(text: str) -> str:
    """The final answer of a GSM8K-style solution ("... #### 42" -> "42"); other text as it is."""
    return text.rsplit("####", 1)[1].strip() if "####" in text else text.strip()


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!?,;:'\"")


def _number(text: str) -> float | None:
    found = _NUMBER.findall(gsm8k_answer(text) if "####" in text else text)
    return float(found[-1].replace(",", "")) if found else None


def _answer_reward(match: Callable[[str, str], bool], field: str) -> RewardFn:
    def reward(prompts: list[str], completions: list[str], **fields: list[Any]) -> list[float]:
        answers = fields.get(field) or [None] * len(completions)
        return [float(a is not None and match(c, gsm8k_answer(str(a)))) for c, a in zip(completions, answers)]

    return reward


def _exact(completion: str, answer: str) -> bool:
    lines = completion.strip().splitlines()
    return bool(lines) and _normal(lines[0]) == _normal(answer)


def _starts_with(completion: str, answer: str) -> bool:
    text, want = _normal(completion), _normal(answer)
    return bool(want) and text.startswith(want) and (len(text) == len(want) or not text[len(want)].isalnum())


def _numeric(completion: str, answer: str) -> bool:
    got, want = _number(completion), _number(answer)
    return got is not None and want is not None and math.isclose(got, want, rel_tol=0, abs_tol=1e-6)


def _regex(pattern: str) -> RewardFn:
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as err:
        raise UserError(f"rewards: regex pattern {pattern!r} is not a valid regular expression: {err}") from None
    return lambda prompts, completions, **fields: [float(compiled.search(c) is not None) for c in completions]


def _length_penalty(max_chars: int) -> RewardFn:
    return lambda prompts, completions, **fields: [-max(0, len(c) - max_chars) / max_chars for c in completions]


REWARDS: dict[str, Callable[[RewardFnSpec, str], RewardFn]] = {
    "exact_match": lambda spec, field: _answer_reward(_exact, field),
    "starts_with": lambda spec, field: _answer_reward(_starts_with, field),
    "numeric_match": lambda spec, field: _answer_reward(_numeric, field),
    "regex": lambda spec, field: _regex(spec.pattern or ""),
    "length_penalty": lambda spec, field: _length_penalty(spec.max_chars or 200),
}
"""Built-in name -> maker(spec, reward_field) of the reward function: the one table of built-in rewards.
The recipe's reward block reads its names from here, so this module imports torch only inside the functions
that score (a recipe is validated without it)."""


def load_function(spec: RewardFnSpec) -> RewardFn:
    """The user's function a recipe named, from the file given with --rewards-file (recipe/user_code.py)."""
    if spec.source is None:
        raise UserError(f"rewards: '{spec.name}' is no built-in reward ({', '.join(REWARDS)}) and names no function "
                        f"of a file given on the command line; pass its file with {OPTION} FILE")
    file, name = spec.source
    module = _FILES.get(file) or _run_file(file)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"rewards: {spec.name}: {file} has no function '{name}'")
    return fn


_FILES: dict[Path, ModuleType] = {}
"""Each --rewards-file runs once per process, however many of its functions the recipe names."""


def _run_file(file: Path) -> ModuleType:
    """Run the user's file (named on the command line) as a module of its own."""
    name = f"tunesmith_rewards_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None or not file.is_file():
        raise UserError(f"{OPTION}: cannot load {file}; is it still there?")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses and pickle look it up there
    spec.loader.exec_module(module)
    _FILES[file] = module
    return module


def load_rewards(specs: list[RewardFnSpec], reward_field: str) -> list[RewardTerm]:
    """The recipe's reward terms, ready to score."""
    terms = []
    for spec in specs:
        fn = REWARDS[spec.name](spec, reward_field) if spec.name in REWARDS else load_function(spec)
        terms.append(RewardTerm(spec.name, spec.weight, _on_rows(fn, spec.name)))
    return terms


def _on_rows(fn: RewardFn, name: str) -> Callable[[list[Prompt], list[str]], list[float]]:
    """Adapt a TRL-style function to rows: prompts as text, the rows' other fields as keyword lists."""

    def score(rows: list[Prompt], completions: list[str]) -> list[float]:
        keys = sorted({key for row in rows for key in row.fields})
        fields = {key: [row.fields.get(key) for row in rows] for key in keys}
        values = fn(prompts=[row.prompt[-1].content for row in rows], completions=completions, **fields)
        if not isinstance(values, (list, tuple)) or len(values) != len(completions):
            raise UserError(f"reward {name} returned {type(values).__name__} of length "
                            f"{len(values) if hasattr(values, '__len__') else '?'}; it must return one float per completion")
        try:
            return [float(v) for v in values]
        except (TypeError, ValueError):
            raise UserError(f"reward {name} returned a value that is not a number: {values[:5]!r}") from None

    return score


def check_answer_field(terms: list[RewardTerm], rows: list[Prompt], reward_field: str) -> None:
    """Answer-matching built-ins need `reward_field` in every row; say so before any sampling."""
    if not any(t.name in ("exact_match", "starts_with", "numeric_match") for t in terms):
        return
    missing = next((i for i, row in enumerate(rows) if row.fields.get(reward_field) is None), None)
    if missing is not None:
        found = ", ".join(sorted(rows[missing].fields)) or "none"
        raise UserError(f"the answer-matching rewards compare with the row field '{reward_field}', which row "
                        f"{missing + 1} lacks (its fields: {found}); set reward_field in the grpo/ppo block")


def score(terms: list[RewardTerm], rows: list[Prompt], completions: list[str]) -> torch.Tensor:
    """Every term's raw reward for each completion: (N, F)."""
    import torch

    return torch.tensor([term.fn(rows, completions) for term in terms], dtype=torch.float32).T.reshape(len(completions), len(terms))


def total(terms: list[RewardTerm], scores: torch.Tensor) -> torch.Tensor:
    """The weighted sum of the terms: (N,) from (N, F)."""
    import torch

    return scores @ torch.tensor([t.weight for t in terms], dtype=scores.dtype)
