"""The trainer's state, typed: what the loop counts and decides, and what it records of the run.

The loop, early stopping, checkpointing and the final summary read and write these fields by name, so a
misspelt key is an AttributeError instead of a silent None. On disk it stays the flat JSON object run.json
("state") and a checkpoint's trainer_state.json always held: `to_json` and `from_json` convert at those two
boundaries only, keys a run never set stay absent (a reader tests `"overfitting" in state`), and keys this
version does not know (an older or newer writer's) travel through `recorded` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

_KEPT_WHEN_NONE = ("best_eval_loss",)
"""Keys written even while None: best_eval_loss is there from step 0 (null until the first evaluation)."""


@dataclass
class TrainState:
    """Counters and decisions of one training run (see the module docstring for its JSON form)."""

    step: int = 0
    """Optimizer steps done; a checkpoint's step, and where a resumed run goes on."""
    tokens: int = 0
    """Real (non-padding) tokens trained on so far, over every process."""
    best_eval_loss: float | None = None
    best_step: int | None = None
    """The step of the best evaluation so far (the checkpoint early stopping keeps)."""
    overfitting: str | None = None
    """The overfitting alarm in words, once it sounded."""
    stopped_early: str | None = None
    """Why train.early_stop ended the run, when it did."""
    trainable_params: int | None = None
    total_params: int | None = None
    schedule: dict[str, Any] | None = None
    """The learning-rate schedule the optimizer steps with (a resume compares the recipe's with it)."""
    data_position: dict[str, Any] | None = None
    """Where a streamed data source stands after `step` (train/stream_plan.py); None for a plan fixed up front."""
    final: dict[str, Any] | None = None
    """The end-of-run summary (eval loss before and after, best checkpoint); run.json keeps it apart."""
    recorded: dict[str, Any] = field(default_factory=dict)
    """What the run measured and switched on (attention, kernels, fused layers, peak memory, plan check),
    flat beside the counters in JSON; the loop writes it and never decides on it."""

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object of run.json's "state" and trainer_state.json (with "final" when set)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name != "recorded" and (value is not None or item.name in _KEPT_WHEN_NONE):
                out[item.name] = value
        return {**out, **self.recorded}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TrainState:
        """The state a `to_json` object (or an older writer's) describes; unknown keys go to `recorded`."""
        known = {item.name for item in fields(cls)} - {"recorded"}
        return cls(**{k: v for k, v in raw.items() if k in known},
                   recorded={k: v for k, v in raw.items() if k not in known})

    def restore(self, saved: dict[str, Any]) -> None:
        """Take a checkpoint's saved JSON over this state (resume): every key it saved wins, the rest stays."""
        merged = TrainState.from_json({**self.to_json(), **saved})
        for item in fields(self):
            setattr(self, item.name, getattr(merged, item.name))
