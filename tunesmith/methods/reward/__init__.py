"""`method: reward` — a reward model trained on preference pairs (for PPO).

    __init__.py   the registration (no recipe block of its own)
    objective.py  RewardTraining, and RewardModel: a finished reward run loaded back for PPO
    losses.py     pairwise_reward_loss
"""

from __future__ import annotations

from tunesmith.methods.unit import Method

UNIT = Method("reward", formats=("preference",), objective="tunesmith.methods.reward.objective:RewardTraining")
