"""Turn pydantic validation errors into one message a user can act on.

Each problem names the dotted key (`train.lr`), says what is wrong, and for unknown keys suggests the
closest valid one, also recognising names users bring from other tools (`learning_rate`, `lora_r`).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from tunesmith.errors import did_you_mean

FOREIGN_NAMES: dict[str, str] = {
    # top level
    "base_model": "model", "model_name_or_path": "model", "model_name": "model", "dataset": "data",
    "datasets": "data", "output_dir": "output", "finetuning_type": "adapter", "stage": "method",
    "training": "train", "trainer": "train", "peft": "adapter_args", "lora": "adapter_args",
    # train
    "learning_rate": "lr", "num_train_epochs": "epochs", "num_epochs": "epochs", "epoch": "epochs",
    "per_device_train_batch_size": "batch_size", "micro_batch_size": "batch_size", "batch": "batch_size",
    "gradient_accumulation_steps": "grad_accum", "gradient_accumulation": "grad_accum",
    "max_length": "max_seq_len", "sequence_len": "max_seq_len", "seq_len": "max_seq_len",
    "cutoff_len": "max_seq_len", "max_seq_length": "max_seq_len", "warmup": "warmup_ratio",
    "lr_scheduler_type": "scheduler", "lr_scheduler": "scheduler", "steps": "max_steps",
    "eval_steps": "eval_every", "save_steps": "save_every", "save_total_limit": "keep_checkpoints",
    "logging_steps": "log_every", "early_stopping_patience": "patience", "grad_clip": "max_grad_norm",
    # data
    "path": "train", "train_file": "train", "files": "train", "eval_file": "eval", "validation": "eval",
    "val": "eval", "test_size": "eval", "val_set_size": "eval", "type": "format", "chat_template": "template",
    # adapter_args
    "rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
    "target": "target_modules", "targets": "target_modules", "num_virtual_tokens": "virtual_tokens",
}


def explain_validation_error(err: ValidationError, root: type[BaseModel], source: str) -> str:
    """One line per problem, prefixed by the recipe's source."""
    lines = [_explain_one(e, root) for e in err.errors()]
    head = f"{source}: invalid recipe" if len(lines) > 1 else f"{source}"
    if len(lines) == 1:
        return f"{head}: {lines[0]}"
    return head + "\n" + "\n".join(f"  - {line}" for line in lines)


def _explain_one(e: dict[str, Any], root: type[BaseModel]) -> str:
    loc = [str(part) for part in e["loc"] if not isinstance(part, int)]
    key = ".".join(loc) or "(top level)"
    kind = e["type"]
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        fields = list(parent.model_fields) if parent else []
        best = did_you_mean(loc[-1], fields, FOREIGN_NAMES)
        hint = f"; did you mean '{'.'.join(loc[:-1] + [best])}'?" if best else ""
        where = ".".join(loc[:-1]) or "the top level"
        return f"{key}: unknown key{hint} (valid keys in {where}: {', '.join(fields)})"
    if kind == "missing":
        return f"{key}: required key is missing"
    msg = e["msg"].removeprefix("Value error, ")
    if kind == "value_error":  # our validators start with the dotted key, or with the last part of it
        return ".".join(loc[:-1] + [msg]) if len(loc) > 1 and msg.startswith(f"{loc[-1]}:") else msg
    return f"{key}: {msg} (got {e.get('input')!r})"


def _model_at(root: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The pydantic model class found by walking field names from `root`."""
    model: type[BaseModel] | None = root
    for name in path:
        if model is None or name not in model.model_fields:
            return None
        model = _model_in(model.model_fields[name].annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, list, tuple):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None
