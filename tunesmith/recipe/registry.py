"""The names a recipe may use that have no table of their own; unknown names fail loudly with a did-you-mean.

Things with an implementation are named by their one table, next to it, and the recipe reads the names
from there: methods (tunesmith/methods/__init__.py METHODS), data formats (data/formats.py FORMATS), chat
templates (data/templates.py TEMPLATES), built-in rewards (methods/shared/rewards.py REWARDS), benchmarks
(evaluate/benchmarks/__init__.py BENCHMARKS), adapter kinds (adapters/kinds/__init__.py KINDS). Each of those tables imports light (no torch; the benchmarks'
implementations load only when run), which keeps validating a recipe and `tunesmith --help` fast.
"""

from tunesmith.adapters.kinds import NAMES
from tunesmith.evaluate.benchmarks import BENCHMARK_NAMES

ADAPTERS: tuple[str, ...] = NAMES
EVAL_SUITES: tuple[str, ...] = ("heldout", "ppl", *BENCHMARK_NAMES, "judge")
"""What `tunesmith eval --suite` (and the recipe's `eval.suite`) can run (evaluate/run_eval.py)."""
ATTN_IMPLEMENTATIONS: tuple[str, ...] = (
    "auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention",
)
"""`model_options.attn_implementation`: "auto" or a transformers attention implementation (speedups/kernels.py)."""
KERNELS: tuple[str, ...] = ("auto", "none", "liger")
"""`model_options.kernels`: fused kernels patched into the model (speedups/kernels.py)."""
TRACKERS: tuple[str, ...] = ("tensorboard", "mlflow", "wandb")
"""`train.report_to`: experiment trackers fed through accelerate's tracking API (train/trackers.py)."""
