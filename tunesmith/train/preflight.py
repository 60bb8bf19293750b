"""What a run checks before it loads any weights, shared by `validate` and `train`.

Each mistake here used to surface late: a traceback from PEFT after minutes of loading (a `target_modules`
entry that matches nothing), a model silently run past the positions it was trained on (`max_seq_len` beyond
its context), a run folder that could never be created (`output:` naming a file), or a run whose every
optimizer step sees the whole data set (a batch larger than the data). The model's shape comes from its
config alone, built on the meta device (no weights, no memory).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunesmith.errors import UserError
from tunesmith.methods import BY_NAME

if TYPE_CHECKING:
    from tunesmith.data.pipeline import PreparedData
    from tunesmith.recipe.spec import Recipe

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
"""Config attributes that hold a model's context length, by family."""


def check_before_loading(recipe: Recipe, processes: int = 1) -> None:
    """Every check that needs no weights and no data: the output folder, then the model's config."""
    from tunesmith.models.load import load_config
    from tunesmith.train.distributed import check_layout

    check_layout(recipe.train.grad_accum, processes)
    check_output(recipe)
    config = load_config(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
    check_context(recipe, config)
    check_picture_adapter(recipe, config)
    check_target_modules(recipe, config)


def check_picture_adapter(recipe: Recipe, config: Any) -> None:
    """A vision-language model trains only with a kind that reads pictures (adapters/unit.py `reads_pictures`):
    refused here, before minutes of loading and tokenizing, rather than when the adapter wraps the model."""
    from tunesmith.adapters.kinds import picture_kinds
    from tunesmith.vision.families import is_vision_config

    if is_vision_config(config) and not recipe.adapter_kind.reads_pictures:
        raise UserError(f"adapter: {recipe.adapter} is not supported for vision-language models ({recipe.model} is "
                        f"one); use {picture_kinds()}")


def check_output(recipe: Recipe) -> None:
    """`output:` (and output/name) must be a folder or not exist yet."""
    run_dir = Path(recipe.output) / recipe.name
    for path in (*reversed(run_dir.parents), run_dir):
        if path.exists() and not path.is_dir():
            what = "output" if path == Path(recipe.output) else "the run folder (output/name)"
            raise UserError(f"output: {path} is a file, but {what} must be a folder (or not exist yet): the run "
                            f"is written to output/name; set output: to a folder, e.g. output: runs")


def context_length(config: Any) -> int | None:
    """The most positions the model was built for, or None when its config does not say."""
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(recipe: Recipe, config: Any) -> None:
    """`train.max_seq_len` must fit the model's context: positions beyond it were never trained."""
    context = context_length(config)
    if context is not None and recipe.train.max_seq_len > context:
        raise UserError(f"train.max_seq_len={recipe.train.max_seq_len} is beyond the context of {recipe.model} "
                        f"({context} positions, config max_position_embeddings); set train.max_seq_len to at most "
                        f"{context}")


def check_target_modules(recipe: Recipe, config: Any) -> None:
    """Every `adapter_args.target_modules` entry must match a module of the model (PEFT's matching rules)."""
    targets = recipe.adapter_args.target_modules
    if not recipe.adapter_kind.reads_target_modules or targets == "all-linear":
        return
    names = module_names(config, recipe.model_options.trust_remote_code)
    if names is None:
        return
    linear = sorted({n.rsplit(".", 1)[-1] for n, kind in names.items() if kind and n.rsplit(".", 1)[-1] != "lm_head"})
    if isinstance(targets, str):  # PEFT: one string is a regular expression over full module names
        missing = [] if any(_full_match(targets, n) for n in names) else [targets]
    else:
        missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        raise UserError(f"adapter_args.target_modules: {', '.join(repr(m) for m in missing)} matches no module of "
                        f"{recipe.model}; its linear modules are: {', '.join(linear)} (or use all-linear)")


def _full_match(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error as err:
        raise UserError(f"adapter_args.target_modules: {pattern!r} is not a valid regular expression ({err}); "
                        "give a list of module names instead, e.g. [q_proj, v_proj]") from None


def module_names(config: Any, trust_remote_code: bool) -> dict[str, bool] | None:
    """Full module name -> whether it is a linear layer, of the model built from `config` on the meta device;
    None when transformers cannot build this architecture as a causal LM."""
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except (ValueError, TypeError, NotImplementedError, RuntimeError):  # an architecture it cannot build here
        return None
    return {name: isinstance(m, (torch.nn.Linear, Conv1D)) for name, m in model.named_modules() if name}


def batch_notes(recipe: Recipe, data: PreparedData) -> list[str]:
    """A warning when one optimizer step asks for more rows than the data holds (every step then is the
    whole data set, smaller than the batch the recipe asks for)."""
    from tunesmith.data.packing import pack_indices
    from tunesmith.data.prepared import sample_lengths

    t = recipe.train
    if data.stream is not None:  # a stream cycles until train.max_steps: no step is short of rows
        return []
    lm = BY_NAME[recipe.method].trains_on_samples  # packed into rows; the others train on examples
    if lm and t.packing:
        units, what = len(pack_indices(sample_lengths(data.train), t.max_seq_len)), "packed rows"
    else:
        units, what = len(data.train) if lm else len(data.train_examples), "rows"
    wanted = t.batch_size * t.grad_accum  # the global batch: N processes share it (train/distributed.py)
    if units == 0 or wanted <= units:
        return []
    return [f"train.batch_size x train.grad_accum = {t.batch_size} x {t.grad_accum} = {wanted} {what} per "
            f"optimizer step, but the training data has {units} {what}: each step takes all of it, a smaller batch "
            f"than asked; lower train.batch_size (or train.grad_accum), or add data"]
