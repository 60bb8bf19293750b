"""The trainer's typed state keeps the flat JSON form of run.json's "state" and trainer_state.json."""

from __future__ import annotations

from tunesmith.train.state import TrainState

OLD_RUN_STATE = {
    "step": 30, "tokens": 4096, "best_eval_loss": 2.5, "trainable_params": 1024, "total_params": 65536,
    "schedule": {"lr": 0.001, "scheduler": "cosine", "warmup_ratio": 0.1, "steps": 30},
    "attn_implementation": "sdpa", "kernels": "none", "gradient_checkpointing": False, "fused_lora_layers": 14,
    "best_step": 20, "overfitting": "eval loss rose", "peak_memory_mib": 812.5, "plan_check": {"ratio": 1.1},
}


def test_a_fresh_state_is_the_json_the_loop_always_started_with() -> None:
    assert TrainState().to_json() == {"step": 0, "tokens": 0, "best_eval_loss": None}


def test_a_run_folders_state_round_trips_unchanged_and_typed() -> None:
    state = TrainState.from_json(OLD_RUN_STATE)
    assert (state.step, state.best_step, state.overfitting, state.trainable_params) == (30, 20, "eval loss rose", 1024)
    assert state.recorded["peak_memory_mib"] == 812.5 and state.stopped_early is None
    assert state.to_json() == OLD_RUN_STATE
    assert "stopped_early" not in state.to_json() and "final" not in state.to_json()


def test_restore_takes_every_saved_key_and_keeps_the_rest() -> None:
    state = TrainState(trainable_params=7, total_params=9, schedule={"lr": 0.5})
    same = state
    state.restore({"step": 12, "tokens": 300, "best_eval_loss": 1.5, "best_step": 10, "schedule": {"lr": 0.1},
                   "kernels": "liger"})
    assert state is same
    assert state.to_json() == {"step": 12, "tokens": 300, "best_eval_loss": 1.5, "best_step": 10,
                               "trainable_params": 7, "total_params": 9, "schedule": {"lr": 0.1}, "kernels": "liger"}
