"""Every name a recipe may use, in one place; unknown names fail loudly with a did-you-mean.

Method names and the formats each trains on come from the method units (tunesmith/methods/__init__.py).
The implementations live next to their subject (formats in data/formats.py, templates in
data/templates.py, ...); tests check that each implementation table covers exactly these names.
"""

ADAPTERS: tuple[str, ...] = ("lora", "qlora", "dora", "prefix", "prompt", "ia3", "bottleneck", "full")
LORA_FAMILY: tuple[str, ...] = ("lora", "qlora", "dora")
FORMATS: tuple[str, ...] = (
    "alpaca", "sharegpt", "messages", "prompt_completion", "text", "preference", "prompt", "kto",
)
TEMPLATES: tuple[str, ...] = ("chatml", "llama3", "alpaca", "plain")
BENCHMARKS: tuple[str, ...] = ("mmlu", "hellaswag", "gsm8k", "mtbench")
"""Benchmarks, one module each in evaluate/benchmarks/<name>.py; this tuple is their registration."""
EVAL_SUITES: tuple[str, ...] = ("heldout", "ppl", *BENCHMARKS, "judge")
"""What `tunesmith eval --suite` (and the recipe's `eval.suite`) can run (evaluate/run_eval.py)."""
ATTN_IMPLEMENTATIONS: tuple[str, ...] = (
    "auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention",
)
"""`model_options.attn_implementation`: "auto" or a transformers attention implementation (speedups/kernels.py)."""
KERNELS: tuple[str, ...] = ("auto", "none", "liger")
"""`model_options.kernels`: fused kernels patched into the model (speedups/kernels.py)."""
TRACKERS: tuple[str, ...] = ("tensorboard", "mlflow", "wandb")
"""`train.report_to`: experiment trackers fed through accelerate's tracking API (train/trackers.py)."""
REWARDS: tuple[str, ...] = ("exact_match", "starts_with", "numeric_match", "regex", "length_penalty")
"""Built-in reward functions for GRPO/PPO (methods/shared/rewards.py); a user's own come from a file given with
--rewards-file on the command line (recipe/user_code.py), never from a module a recipe names."""

CHAT_FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "messages", "prompt_completion")
