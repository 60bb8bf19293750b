"""`method: reward` — a reward model trained on preference pairs (for PPO).

    __init__.py   the registration (no recipe block of its own)
    objective.py  RewardTraining, and RewardModel: a finished reward run loaded back for PPO
    losses.py     pairwise_reward_loss
"""

from __future__ import annotations

from tunesmith.methods.unit import Method, ObjectiveClass


def _objective() -> ObjectiveClass:
    from tunesmith.methods.reward.objective import RewardTraining

    return RewardTraining


UNIT = Method("reward", formats=("preference",), objective=_objective, sequences_per_unit=2)
