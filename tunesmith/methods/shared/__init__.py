"""What several methods' objectives share; the loop (train/) knows none of it.

    preference.py         pairs and answers into planned micro-batches (DPO, ORPO, KTO, reward), precomputed
                          reference log-probs
    rollout.py            sampling completions from the policy, their log-probs, reward metrics (GRPO, PPO)
    rollout_objective.py  RolloutObjective: prompts, reward terms and the rollout schedule of a sampling method
    rewards.py            REWARDS, the built-in reward functions (one table), and users' own from --rewards-file
    reference.py          the frozen reference: the adapter disabled, or a copy of full weights
    policy_losses.py      the clipped policy-ratio surrogate and masked means (GRPO, PPO)
    logprobs.py           per-token log-probabilities of labelled tokens
    token_nll.py          token-level NLL of the trained tokens (SFT/CPT, held-out evaluation)
"""
