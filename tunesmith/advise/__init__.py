"""`tunesmith advise`: RAG, fine-tune or both, from six criteria; the paradigm; a recipe that fits.

Answers come from flags, a YAML file of `criterion: answer`, or, for what is still missing, an interactive
questionnaire. The table of votes is in criteria.py, the rules in decide.py, the recipe in recipe_writer.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.advise.criteria import CRITERIA, QUESTIONS, check_answers, missing
from tunesmith.advise.decide import Decision, Paradigm, decide, paradigm
from tunesmith.advise.recipe_writer import adapter_fits, build_recipe, write_recipe
from tunesmith.errors import UserError
from tunesmith.plan.hardware import Device, cpu_device, gpu_device, memory_device
from tunesmith.plan.shape import load_shape, parse_count

if TYPE_CHECKING:
    import torch


@dataclass
class Advice:
    decision: Decision
    paradigm: Paradigm | None
    recipe: Path | None
    notes: list[str]


def read_answers(file: Path | None, flags: dict[str, str | None],
                 ask: Callable[[str, str, tuple[str, ...]], str] | None) -> dict[str, str]:
    """Answers from the YAML file, then flags (which win), then `ask` for each criterion still missing."""
    answers: dict[str, str] = {}
    if file is not None:
        if not file.is_file():
            raise UserError(f"advise: answers file not found: {file}")
        raw = yaml.safe_load(file.read_text()) or {}
        if not isinstance(raw, dict):
            raise UserError(f"{file}: give criterion: answer pairs, e.g. freshness: daily")
        answers.update({str(k): str(v) for k, v in raw.items()})
    answers.update({k: v for k, v in flags.items() if v is not None})
    answers = check_answers(answers)
    for name in missing(answers):
        if ask is None:
            raise UserError(f"advise: no answer for {', '.join(missing(answers))}; pass --{name} "
                            f"({'|'.join(CRITERIA[name])}), an --answers FILE, or --interactive")
        answers[name] = _ask_until_valid(ask, name)
    return answers


def _ask_until_valid(ask: Callable[[str, str, tuple[str, ...]], str], name: str, tries: int = 3) -> str:
    """Ask again (up to `tries` times) when the answer is not one of the choices."""
    for attempt in range(tries):
        try:
            return check_answers({name: ask(name, QUESTIONS[name], tuple(CRITERIA[name]))})[name]
        except UserError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def pick_device(gpu: str | None, memory: str | None, probe: bool = False, dtype: torch.dtype | None = None) -> Device:
    """--gpu NAME, --memory SIZE, or this CPU; `probe` measures this CPU's speed (for time estimates) with a
    matmul in `dtype`, the dtype the run will compute in (plan/setup.py:compute_dtype)."""
    if gpu and memory:
        raise UserError("give --gpu or --memory, not both")
    if gpu:
        return gpu_device(gpu)
    if memory:
        return memory_device(memory, flops=None if probe else 1.0, dtype=dtype)
    return cpu_device(probe=probe, dtype=dtype)


def advise(answers: dict[str, str], *, model: str | None = None, data: str | None = None,
           device: Device | None = None, out: Path | None = None, seq_len: int = 1024,
           replay: str | None = None) -> Advice:
    """Decide; when fine-tuning is in the outcome and a model is given, choose the paradigm, and with `out`
    write the recipe there. A model given as a size (7B) or a missing --data leaves a FILL-IN value in the
    recipe, named in the notes, for the user to replace before `tunesmith validate`."""
    decision = decide(answers)
    notes: list[str] = []
    if not decision.fine_tunes:
        return Advice(decision, None, None, notes)
    if model is None:
        notes.append("give --model (folder, hub id, GGUF file or a size such as 7B) to get the paradigm and a recipe")
        return Advice(decision, paradigm(answers, {"lora": True}), None, notes)
    device = device or cpu_device(probe=False)
    shape = load_shape(model)
    chosen = paradigm(answers, adapter_fits(shape, device, seq_len))
    if out is None:
        notes.append("give --out FILE to write this recipe (with --data FILE for its training data)")
        return Advice(decision, chosen, None, notes)
    if ADAPTER_KINDS[chosen.adapter].trains_base and replay is None:
        notes.append("full fine-tuning: add --replay FILE (general data) to mix in against forgetting")
    model_value, data_value = _fill_ins(model, data, notes)
    raw = build_recipe(out.stem, model_value, data_value, chosen.adapter, shape, device, seq_len, replay)
    if "cpt" in chosen.steps:
        notes.append("the written recipe is the SFT step; run CPT first (method: cpt on the raw domain text)")
    if "dpo" in chosen.steps:
        notes.append("after SFT: a method: dpo recipe on the preference pairs, starting from the SFT model")
    return Advice(decision, chosen, write_recipe(raw, out), notes)


def _fill_ins(model: str, data: str | None, notes: list[str]) -> tuple[str, str]:
    """The recipe's model and data.train: as given, or a FILL-IN value (a size names no model) and a note."""
    missing = []
    if parse_count(model) is not None:
        missing.append(f"model: (a model of about {model} parameters: a folder, hub id or GGUF file)")
        model = f"FILL-IN-{model}-model"
    if data is None:
        missing.append("data.train: (your training data file)")
        data = "FILL-IN-data.jsonl"
    if missing:
        notes.append("before `tunesmith validate`, replace the FILL-IN values in the recipe: " + "; ".join(missing))
    return model, data
