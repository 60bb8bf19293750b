"""What defines a training method: its name, the data it trains on, its recipe block, its objective, its facts.

Each method is one folder under `tunesmith/methods/`: `__init__.py` holds its recipe block and its `Method`
record (light: importable by the recipe schema), `objective.py` its objective (what the shared loop calls),
`losses.py` its pure loss functions. `tunesmith/methods/__init__.py` registers each record in one line.

The facts (`trains_on_samples`, `needs_reference`, ...) are what the rest of the code base asks of a method:
the planner's memory and time model, the preflight batch check, the sharded strategies, the recipe's advice.
None of them compares a method's name, so a new method states its facts here and every one of them follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith.recipe.schema import Strict

if TYPE_CHECKING:
    from tunesmith.recipe.spec import Recipe
    from tunesmith.train.objective import Objective

ObjectiveClass = Callable[["Recipe", Any, Any, Any], "Objective"]
"""An objective's constructor: (recipe, prepared data, tokenizer, model) -> the objective."""


@dataclass(frozen=True)
class Method:
    """One `method:` value of the recipe."""

    name: str
    formats: tuple[str, ...]
    """The data formats it can train on (data/formats.py)."""
    objective: Callable[[], ObjectiveClass]
    """Returns its objective class; the import sits in that function, so the schema never loads torch."""
    block: type[Strict] | None = None
    """Its recipe block (the key is `name`), or None when it has no settings of its own."""
    checks: Callable[[Recipe], list[str]] | None = None
    """Cross-field problems of a recipe using this method, each phrased as what to change."""
    trains_on_samples: bool = False
    """Next-token loss on tokenized samples (sft, cpt): train.packing packs them into rows, only the trained
    share of their tokens reaches the output head (which the fused loss can take), data.replay mixes general
    samples in. The other methods train on whole examples (pairs, answers, prompts), one a row."""
    needs_reference: bool = False
    """Scores against a frozen reference model: its forward each step (logits without gradient) and, with
    full weights, a frozen copy, unless the block's `precompute_ref` or `reference_free` drops it."""
    generates_rollouts: bool = False
    """Samples completions from the policy during training: a step then includes generation, which the
    planner's time estimate does not model (it says so)."""
    sequences_per_unit: int | Callable[[Recipe], int] = 1
    """Sequences one item of train.batch_size holds: 1 for a sample or an answer, 2 for a preference pair,
    the group for a group-sampling method (a function of the recipe where its block sets it)."""
    runs_sharded: bool = False
    """Runs under distributed.strategy fsdp2, zero2 and zero3 (what is tested there); ddp runs every method."""

    def build(self, recipe: Recipe, data: Any, tokenizer: Any, model: Any) -> Objective:
        """The objective for a run of this method."""
        return self.objective()(recipe, data, tokenizer, model)

    def problems(self, recipe: Recipe) -> list[str]:
        return self.checks(recipe) if self.checks else []

    def sequences(self, recipe: Recipe) -> int:
        """Sequences one micro-batch item holds under `recipe` (see `sequences_per_unit`)."""
        per_unit = self.sequences_per_unit
        return per_unit if isinstance(per_unit, int) else per_unit(recipe)
