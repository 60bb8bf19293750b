"""`tunesmith merge A B ... --method M`: several finished runs of one base combined into one run folder.

    tunesmith merge runs/code runs/style --method ties --density 0.5 [--weights 1,1] [--out DIR] [--into-base]

LoRA (and QLoRA) runs combine through PEFT's `add_weighted_adapter` (linear, cat, svd, ties, dare_linear,
dare_ties, magnitude_prune, and the `_svd` variants that apply the last four to whole updates) into one LoRA
adapter, or with `--into-base` folded into the base weights (checked against base + merged adapter like a
single merge). Full fine-tunes combine tensor by tensor on their task
vectors (run weights minus base weights) through PEFT's merge utilities, or by SLERP of two runs' weights;
ship/merge_methods.py says which method does what, and why PEFT rather than mergekit.

The output is an ordinary run folder (runs/derived.py): run.json plus `adapter/` or `model/`, recording its
parents, method, weights, density and seed, so eval, serve, export and compare take it as they take a run.
Everything that can be refused is refused before a model loads: runs not finished, different base models,
adapter kinds or chat templates, a kind that does not combine, a method that does not fit the kind, LoRA
ranks the method cannot combine (PEFT's own rule), weights that do not match the runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.adapters.folder import PEFT_CONFIG, read_adapter_config
from tunesmith.adapters.kinds import KINDS
from tunesmith.adapters.unit import Adapter, Combination
from tunesmith.errors import UserError
from tunesmith.models.load import load_model, load_tokenizer, resolve_dtype
from tunesmith.models.stored_dtype import stored_dtype
from tunesmith.runs.derived import check_new_folder, parent_entry, write_derived_run
from tunesmith.runs.record import RunRecord
from tunesmith.ship.merge import (
    MergeParityError,
    dtype_name,
    load_base,
    logits_of,
    max_abs_diff,
    parity_batch,
    parity_tolerance,
    read_finished_run,
)
from tunesmith.ship.merge_methods import METHODS, MergeMethod, merge_method, slerp

MERGED = "merged"
"""The name of the combined adapter inside the PeftModel that builds it."""
DEFAULT_DENSITY = 0.5


@dataclass(frozen=True)
class CombineResult:
    out: Path
    method: str
    parents: tuple[str, ...]
    output: str
    """"adapter" (a LoRA adapter on the shared base) or "model" (full weights)."""
    rank: int | None = None
    """The combined LoRA adapter's rank (cat adds the ranks up)."""
    max_abs_diff: float | None = None
    """--into-base: merged model vs base + combined adapter, fp32."""
    dtype: str | None = None
    """The saved model's dtype (model outputs)."""


def combine_runs(run_dirs: Sequence[str | Path], method: str, weights: Sequence[float] | None = None,
                 density: float | None = None, out: str | Path | None = None, into_base: bool = False,
                 dtype: str | None = None, seed: int = 0, overwrite: bool = False) -> CombineResult:
    """Combine the finished runs `run_dirs` (same base) with `method` into the run folder `out` (default: beside
    the first run, named after the runs and the method). `weights`: one per run (default 1 each); `density`:
    the fraction of entries TIES, DARE and magnitude pruning keep (default 0.5); `seed` fixes DARE's draws."""
    runs = [read_finished_run(d) for d in run_dirs]
    spec = merge_method(method)
    kind = _check_runs(runs, spec)
    weights = _check_weights(weights, runs, spec)
    density = _check_density(density, spec)
    if kind.combination is Combination.LORA_FACTORS:
        _check_ranks(runs, spec)
        if dtype is not None and not into_base:
            raise UserError("--dtype sets the dtype of a saved model; merged LoRA runs give an adapter (kept in fp32) "
                            "unless --into-base folds it into the base: add --into-base or drop --dtype")
    elif into_base:
        raise UserError(f"--into-base folds a merged adapter into the base; runs of adapter: {kind.name} always merge "
                        "into a model: drop --into-base")
    target = Path(out) if out is not None else runs[0].path.parent / f"{'+'.join(r.name for r in runs)}-{spec.name}"
    check_new_folder(target, runs, overwrite)
    save_dtype = resolve_dtype(dtype) if dtype else stored_dtype(runs[0].base_model)
    tokenizer = load_tokenizer(str(runs[0].weights_dir))
    settings = {"method": spec.name, "weights": weights, "density": density, "seed": seed if spec.random else None,
                "into_base": into_base, "parents": [parent_entry(run) for run in runs]}
    if kind.combination is Combination.WEIGHT_DELTAS:
        model = _combined_weights(runs, spec, weights, density, tokenizer, seed).to(save_dtype)
        record = _record(target, runs[0], _full_kind(), "model", settings)
        _write(target, record, model, tokenizer, overwrite)
        return CombineResult(target, spec.name, tuple(r.name for r in runs), "model", dtype=dtype_name(save_dtype))
    peft_model = _combined_lora(runs, spec, weights, density, tokenizer, seed)
    rank = int(peft_model.peft_config[MERGED].r)
    if not into_base:
        record = _record(target, runs[0], kind, "adapter", settings, rank=rank)
        write_derived_run(target, record, lambda folder: _save_adapter(peft_model, folder, runs[0], tokenizer), overwrite)
        return CombineResult(target, spec.name, tuple(r.name for r in runs), "adapter", rank=rank)
    model, diff = _fold_into_base(peft_model, tokenizer, target)
    record = _record(target, runs[0], _full_kind(), "model", {**settings, "rank": rank})
    _write(target, record, model.to(save_dtype), tokenizer, overwrite)
    return CombineResult(target, spec.name, tuple(r.name for r in runs), "model", rank=rank, max_abs_diff=diff,
                         dtype=dtype_name(save_dtype))


def parse_weights(text: str | None) -> list[float] | None:
    """`--weights 1,0.5` as numbers; a UserError naming the option when a part is not a number."""
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--weights '{text}' must be numbers separated by commas, one per run (e.g. 1,0.5)") from None


def _check_runs(runs: list[RunRecord], spec: MergeMethod) -> Adapter:
    """The runs' common adapter kind, once they are two or more of one base, kind and template, and the kind and
    `spec` fit together."""
    if len(runs) < 2:
        raise UserError(f"--method {spec.name} combines several runs; give two or more (one run alone merges into "
                        "its base without --method)")
    paths = [run.path.resolve() for run in runs]
    if len(set(paths)) != len(paths):
        raise UserError("the same run is given twice; give each run once (use --weights to weigh one more)")
    first = runs[0]
    for run in runs[1:]:
        if _same_model(run.base_model) != _same_model(first.base_model):
            raise UserError(f"runs {first.path} and {run.path} were trained from different base models "
                            f"({first.base_model} and {run.base_model}); only fine-tunes of one base can be merged")
        if run.adapter != first.adapter:
            raise UserError(f"runs {first.path} ({first.adapter}) and {run.path} ({run.adapter}) trained different "
                            "adapter kinds; only runs of one kind can be merged (merge each into the base alone)")
        if run.template != first.template:
            raise UserError(f"runs {first.path} and {run.path} trained with different chat templates ({first.template}"
                            f", {run.template}); a merged model answers through one template, so merge runs of one")
    kind = first.adapter_kind
    if kind.combination is None:
        raise UserError(f"runs of adapter: {kind.name} cannot be merged together: "
                        f"{kind.combine_refusal or kind.merge_refusal}")
    if kind.combination not in spec.kinds:
        fitting = ", ".join(_methods_for(kind.combination))
        raise UserError(f"--method {spec.name} does not combine {kind.name} runs ({spec.summary}); for them use one "
                        f"of: {fitting}")
    if spec.interpolates and len(runs) != 2:
        raise UserError(f"--method {spec.name} interpolates between exactly two runs; {len(runs)} were given")
    return kind


def _methods_for(combination: Combination) -> list[str]:
    return [m.name for m in METHODS if combination in m.kinds]


def _same_model(reference: str) -> str:
    """A base model reference compared by where it is: a folder or file by its resolved path, a hub id as is."""
    path = Path(reference).expanduser()
    return str(path.resolve()) if path.exists() else reference


def _check_weights(weights: Sequence[float] | None, runs: list[RunRecord], spec: MergeMethod) -> list[float]:
    if weights is None:
        return [1.0] * len(runs)
    weights = [float(w) for w in weights]
    if len(weights) != len(runs):
        raise UserError(f"--weights has {len(weights)} values for {len(runs)} runs; give one per run, in order")
    if not all(math.isfinite(w) for w in weights):
        raise UserError(f"--weights {weights} must be finite numbers")
    if spec.interpolates and (min(weights) < 0 or sum(weights) <= 0):
        raise UserError(f"--method {spec.name} takes t = w2 / (w1 + w2) from --weights: give two numbers >= 0, not "
                        "both 0")
    return weights


def _check_density(density: float | None, spec: MergeMethod) -> float | None:
    if not spec.uses_density:
        if density is not None:
            pruning = ", ".join(m.name for m in METHODS if m.uses_density)
            raise UserError(f"--density applies to the methods that prune ({pruning}), not to --method {spec.name}; "
                            "drop it")
        return None
    density = DEFAULT_DENSITY if density is None else float(density)
    if not 0 < density <= 1:
        raise UserError(f"--density {density} must be in (0, 1]: the fraction of each update's entries kept")
    return density


def _check_ranks(runs: list[RunRecord], spec: MergeMethod) -> None:
    """Each LoRA run's rank (its largest, with a rank_pattern); a UserError when `spec` needs equal ranks and they
    differ (PEFT's add_weighted_adapter refuses them for the same reason)."""
    ranks = []
    for run in runs:
        config = read_adapter_config(run.weights_dir / PEFT_CONFIG)
        r = config.get("r")
        pattern = config.get("rank_pattern") or {}
        if not isinstance(r, int) or not isinstance(pattern, dict):
            raise UserError(f"{run.weights_dir / PEFT_CONFIG} has no whole-number rank r; was it written by PEFT?")
        ranks.append(max([r, *(v for v in pattern.values() if isinstance(v, int))]))
    if spec.same_rank and len(set(ranks)) > 1:
        listed = ", ".join(f"{run.name}: r={rank}" for run, rank in zip(runs, ranks))
        any_rank = " or ".join(m.name for m in METHODS if Combination.LORA_FACTORS in m.kinds and not m.same_rank)
        raise UserError(f"--method {spec.name} combines LoRA matrices entry by entry, so every adapter needs the same "
                        f"rank; these differ ({listed}). Use --method {any_rank}, which combine any ranks")


def _combined_lora(runs: list[RunRecord], spec: MergeMethod, weights: list[float], density: float | None,
                   tokenizer: Any, seed: int) -> Any:
    """The fp32 base with every run's adapter loaded and PEFT's combination of them added as MERGED, active;
    the RNG is seeded right before the combination, so DARE's draws depend on `seed` alone."""
    from peft import PeftModel

    names = [f"run{i}" for i in range(len(runs))]
    model = PeftModel.from_pretrained(load_base(runs[0], tokenizer), str(runs[0].weights_dir), adapter_name=names[0])
    for name, run in zip(names[1:], runs[1:]):
        model.load_adapter(str(run.weights_dir), adapter_name=name)
    torch.manual_seed(seed)
    model.add_weighted_adapter(names, weights, MERGED, combination_type=spec.peft_name, density=density)
    model.set_adapter(MERGED)
    model.eval()
    return model


def _save_adapter(model: Any, folder: Path, first: RunRecord, tokenizer: Any) -> None:
    """The MERGED adapter alone as a standard PEFT folder (loads as the default adapter), with the tokenizer."""
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    state = {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(model, adapter_name=MERGED).items()}
    save_file(state, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = dataclasses.replace(model.peft_config[MERGED], base_model_name_or_path=first.base_model,
                                 inference_mode=True)
    config.save_pretrained(str(folder))
    tokenizer.save_pretrained(folder)


def _fold_into_base(model: Any, tokenizer: Any, target: Path) -> tuple[torch.nn.Module, float]:
    """MERGED folded into the base weights, checked against base + MERGED (fp32) before anything is written."""
    batch = parity_batch(tokenizer)
    adapter_logits = logits_of(model, batch)
    merged = model.merge_and_unload(adapter_names=[MERGED])
    diff = max_abs_diff(logits_of(merged, batch), adapter_logits, batch["attention_mask"])
    allowed = parity_tolerance(float(adapter_logits.abs().max()))
    if not diff <= allowed:
        raise MergeParityError(f"the merged model's logits differ from base + combined adapter by up to {diff:.3g} "
                               f"(> {allowed:.3g}); nothing was written to {target}. Keep the combined adapter instead "
                               "(drop --into-base)")
    return merged, diff


def _combined_weights(runs: list[RunRecord], spec: MergeMethod, weights: list[float], density: float | None,
                      tokenizer: Any, seed: int) -> torch.nn.Module:
    """The base (fp32) with every floating tensor replaced by the combination of the runs' tensors: `spec.deltas`
    on the task vectors (run - base), or SLERP of the two runs' tensors. Tied tensors are combined once."""
    base = load_model(runs[0].base_model, dtype="fp32", tokenizer=tokenizer)
    parents = [load_model(str(run.weights_dir), dtype="fp32", tokenizer=tokenizer).state_dict() for run in runs]
    state = base.state_dict()
    for run, parent in zip(runs, parents):
        shapes = {k: tuple(v.shape) for k, v in parent.items()}
        if shapes != {k: tuple(v.shape) for k, v in state.items()}:
            raise UserError(f"run {run.path}'s weights do not have the base's tensors and shapes (resized "
                            "embeddings, another architecture?); only runs with the base's exact shapes can be merged")
    scale = torch.tensor(weights, dtype=torch.float32)
    done: dict[int, torch.Tensor] = {}
    merged = {}
    torch.manual_seed(seed)  # DARE's draws: tensor by tensor, in the state dict's order
    for key, value in state.items():
        if not value.is_floating_point():
            merged[key] = value
        elif value.data_ptr() in done:
            merged[key] = done[value.data_ptr()]
        elif spec.interpolates:
            merged[key] = slerp(weights[1] / sum(weights), parents[0][key], parents[1][key])
        else:
            merged[key] = value + spec.deltas([p[key] - value for p in parents], scale, density).to(value.dtype)
        done.setdefault(value.data_ptr(), merged[key])
    base.load_state_dict(merged)
    return base


def _full_kind() -> Adapter:
    """The kind of a standalone model (the run saves `model/`), asked of the records, not named."""
    return next(kind for kind in KINDS if kind.trains_base)


def _record(target: Path, first: RunRecord, kind: Adapter, output: str, settings: dict[str, Any],
            rank: int | None = None) -> RunRecord:
    """run.json of the combined folder: the first parent's recipe and method, under the new name and kind."""
    recipe = {**first.recipe, "name": target.name, "output": str(target.parent.resolve()), "adapter": kind.name}
    if rank is not None:  # PEFT gives the combined adapter lora_alpha = r: the scaling lives in its matrices
        recipe["adapter_args"] = {**first.adapter_args, "r": rank, "alpha": rank}
    return RunRecord(path=target, name=target.name, status="done", recipe=recipe, base_model=first.base_model,
                     method=first.method, adapter=kind.name, output=output, extra={"merge": settings})


def _write(target: Path, record: RunRecord, model: torch.nn.Module, tokenizer: Any, overwrite: bool) -> None:
    write_derived_run(target, record, lambda folder: (model.save_pretrained(folder), tokenizer.save_pretrained(folder)),
                      overwrite)
