"""DeepSpeed ZeRO-2/3 over 2 CPU processes (gloo, DeepSpeed's CPU accelerator) train as one process does.

Same global batch (batch_size x grad_accum = 4 x 4 rows: 2 micro-batches per rank, so the engine's
gradient-accumulation boundary is exercised), fp32, no dropout: losses and saved weights agree to 1e-4.
The saved folder is loaded back the way `eval`/`serve` load a run, and its logits match the 1-process run's.
The launch tests are marked `distributed` (CI: `pytest -m distributed`); the first DeepSpeed start on a
machine compiles a small op (minutes, then cached). The unsupported-combination checks run by default.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_distributed import TOLERANCE, max_difference, trained, write_recipe
from tests.test_train import make_recipe, tiny_setup  # noqa: F401  (fixture)
from tunesmith.errors import UserError
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.load import load_target
from tunesmith.runs.targets import resolve_target
from tunesmith.train import zero

needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed is not installed (pip install deepspeed)")


def zero_recipe(tiny_setup, folder: Path, adapter: str) -> Path:
    """The 2-process test recipe with 4 micro-batches per step and no mid-run checkpoints."""
    recipe = write_recipe(tiny_setup, folder, adapter)
    spec = yaml.safe_load(recipe.read_text())
    spec["train"].update(grad_accum=4, max_steps=4)
    for key in ("save_every", "keep_checkpoints"):
        spec["train"].pop(key)
    recipe.write_text(yaml.safe_dump(spec))
    return recipe


@pytest.fixture(scope="module")
def one_process(tiny_setup, tmp_path_factory) -> Callable[[str], Path]:
    """The 1-process reference run of an adapter, trained once when first asked for."""
    runs: dict[str, Path] = {}

    def reference(adapter: str) -> Path:
        if adapter not in runs:
            runs[adapter] = trained(zero_recipe(tiny_setup, tmp_path_factory.mktemp(adapter), adapter), "one")
        return runs[adapter]

    return reference


def logits(run: Path) -> torch.Tensor:
    loaded = load_target(resolve_target(str(run)), dtype="fp32")
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        return loaded.model(input_ids=ids).logits


@pytest.mark.distributed
@needs_deepspeed
@pytest.mark.parametrize("strategy", ["zero2", "zero3"])
@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_zero_trains_like_one_process(strategy, adapter, one_process) -> None:
    one = one_process(adapter)
    recipe = one.parent.parent / f"{adapter}.yaml"
    # ZeRO-3 keeps parameters under 1e5 elements whole on every process by default: all of this tiny model's
    release = ["distributed.zero_options={stage3_param_persistence_threshold: 0}"] if strategy == "zero3" else []
    sharded = trained(recipe, strategy, f"distributed.strategy={strategy}", *release, "--nproc", "2")
    log = (sharded / "train.log").read_text()
    assert f"{strategy}: DeepSpeed ZeRO stage {strategy[-1]} over 2 processes" in log and "(checked)" in log
    loss_gap, weight_gap = max_difference(one, sharded)
    logit_gap = (logits(one) - logits(sharded)).abs().max().item()
    print(f"{adapter}: {strategy} 2 processes vs 1: max |loss diff| {loss_gap:.2e}, "
          f"max |weight diff| {weight_gap:.2e}, max |logit diff| {logit_gap:.2e}")
    assert loss_gap <= TOLERANCE and weight_gap <= TOLERANCE and logit_gap <= TOLERANCE


@pytest.mark.parametrize("change, message", [
    ({"adapter": "qlora"}, "adapter lora or full"),
    ({"adapter": "dora"}, "adapter lora or full"),
    ({"method": "dpo"}, "method sft/cpt"),
    ({"save_every": 2}, "train.save_every"),
])
def test_unsupported_zero_combinations_are_clear_errors(change, message, tiny_setup, tmp_path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, **{k: v for k, v in change.items() if k == "save_every"},
                         **({"adapter": change["adapter"]} if "adapter" in change else {}))
    recipe.distributed.strategy = "zero3"
    if "method" in change:
        recipe.method = change["method"]
    with pytest.raises(UserError, match=message):
        zero.check_supported(recipe)


def test_zero_config_splits_the_step_over_the_ranks(tiny_setup, tmp_path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, grad_accum=4, max_grad_norm=0.5)
    recipe.distributed.strategy = "zero2"
    config = zero.deepspeed_config(recipe, world_size=2)
    assert config["gradient_accumulation_steps"] == 2 and config["train_batch_size"] == 4 * 4
    assert config["zero_optimization"]["stage"] == 2 and config["gradient_clipping"] == 0.5
    recipe.distributed.zero_options = {"reduce_bucket_size": 1000}
    assert zero.deepspeed_config(recipe, 2)["zero_optimization"] == {
        "stage3_gather_16bit_weights_on_model_save": True, "reduce_bucket_size": 1000, "stage": 2}


@pytest.mark.parametrize("options, message", [({"stage": 3}, "cannot set stage"), ({"x": 1}, "zero2/zero3 only")])
def test_zero_options_are_checked(options, message, tiny_setup, tmp_path) -> None:
    raw = make_recipe(tiny_setup, tmp_path).model_dump()
    raw["distributed"] = {"strategy": "zero3" if "stage" in options else "ddp", "zero_options": options}
    with pytest.raises(UserError, match=message):
        recipe_from_dict(raw)


def test_partitioned_weights_keep_their_decay_group_and_size() -> None:
    """ZeRO-3 leaves each rank an empty placeholder and the full shape in `ds_shape`: weight decay and the
    parameter counts must follow the full shape, as in one process."""
    from tunesmith.models.load import count_parameters
    from tunesmith.train.optim import build_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    placeholder = torch.nn.Parameter(torch.empty(0))
    placeholder.ds_shape, placeholder.ds_numel = torch.Size([8, 8]), 64
    model[0].weight = placeholder
    groups = build_optimizer(model, lr=1e-3, weight_decay=0.01).param_groups
    decayed = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert len(decayed) == 1 and decayed[0] is placeholder
    assert count_parameters(model) == (72, 72)
