"""Experiment trackers users already run (TensorBoard, MLflow, Weights & Biases), fed through accelerate.

`train.report_to: [tensorboard, mlflow, wandb]` hands the loop's records to accelerate's tracking API: the
Accelerator is built with `log_with`, `init_trackers` receives the resolved recipe (flattened to dotted
keys, as TensorBoard's hparams and MLflow's params take only scalars), and every record written to
metrics.jsonl is also passed to `accelerator.log` at its step. metrics.jsonl stays the source of truth;
trackers are copies for the tools people already look at.

Where each writes, unless its own environment variable says otherwise:
    tensorboard  RUN_DIR/tensorboard/<name>/      (tensorboard --logdir RUN_DIR/tensorboard)
    mlflow       MLFLOW_TRACKING_URI (a server, or a file store with MLFLOW_ALLOW_FILE_STORE=true), else an
                 SQLite store at RUN_DIR/mlflow.db, MLflow's own recommendation (experiment <name>)
    wandb        RUN_DIR/wandb/ plus the W&B project <name>; WANDB_MODE=offline keeps it on disk
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import UserError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from tunesmith.recipe.spec import Recipe

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"


def accelerator_kwargs(recipe: Recipe) -> dict[str, Any]:
    """What `Accelerator(...)` needs for the recipe's trackers; {} when it names none.

    Checks here, before any model is loaded, that each tracker's package is installed."""
    names = list(dict.fromkeys(recipe.train.report_to))
    if not names:
        return {}
    missing = [PACKAGES[n] for n in names if importlib.util.find_spec(PACKAGES[n]) is None]
    if missing:
        raise UserError(f"train.report_to names {', '.join(missing)}, which is not installed: "
                        f"pip install {' '.join(missing)} (or tunesmith[trackers]), or remove it from train.report_to")
    from accelerate.utils import ProjectConfiguration

    run_dir = Path(recipe.run_dir).resolve()
    return {"log_with": names,
            "project_config": ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / TENSORBOARD_DIR))}


def start_trackers(accelerator: Accelerator, recipe: Recipe, resolved: dict[str, Any]) -> None:
    """Open the trackers' runs with the resolved recipe as their configuration (no-op without trackers)."""
    names = recipe.train.report_to
    if not names:
        return
    run_dir = Path(recipe.run_dir).resolve()
    init: dict[str, dict[str, Any]] = {}
    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        mlflow.set_tracking_uri(f"sqlite:///{run_dir / MLFLOW_DB}")
    if "mlflow" in names:
        init["mlflow"] = {"run_name": recipe.name}
    if "wandb" in names:
        init["wandb"] = {"dir": str(run_dir), "name": recipe.name}
    accelerator.init_trackers(recipe.name, config=flatten(resolved), init_kwargs=init)


def log_to_trackers(accelerator: Accelerator, record: dict[str, Any]) -> None:
    """One metrics.jsonl record, at its step, to every tracker (accelerate logs on the main process only)."""
    if not accelerator.trackers:
        return
    values = {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
    accelerator.log(values, step=record["step"])


def end_trackers(accelerator: Accelerator) -> None:
    """Flush and close the trackers' runs (TensorBoard writes its last events, MLflow ends its run)."""
    if accelerator.trackers:
        accelerator.end_training()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """`{"train": {"lr": 1e-4}}` -> `{"train.lr": 1e-4}`; None and lists become JSON text, as trackers'
    hyperparameter tables hold only scalars."""
    flat: dict[str, str | int | float | bool] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (str, int, float, bool)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat
