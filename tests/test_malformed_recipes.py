"""Recipe values that used to pass validation and fail (or silently misbehave) later: each is one UserError."""

from __future__ import annotations

import pytest

from tunesmith.errors import UserError
from tunesmith.recipe.spec import recipe_from_dict

BASE = {"name": "r", "model": "m", "data": {"train": "x.jsonl"}}


@pytest.mark.parametrize("block, key, value, message", [
    ("train", "lr", float("inf"), "finite"),
    ("train", "lr", float("nan"), "finite"),
    ("train", "batch_size", True, "expected a number, got true"),
    ("train", "grad_accum", False, "expected a number"),
    ("train", "seed", -1, "greater than or equal to 0"),
    ("train", "seed", 2**32, "less than"),
    ("model_options", "dtype", "fp64", "model_options.dtype"),
])
def test_bad_value_is_a_clear_error(block, key, value, message) -> None:
    with pytest.raises(UserError, match=message):
        recipe_from_dict({**BASE, block: {key: value}})


def test_good_values_still_pass() -> None:
    recipe = recipe_from_dict({**BASE, "train": {"lr": 1e-4, "batch_size": 2, "seed": 2**32 - 1, "packing": True},
                               "model_options": {"dtype": "bf16"}})
    assert recipe.train.batch_size == 2 and recipe.train.packing is True
