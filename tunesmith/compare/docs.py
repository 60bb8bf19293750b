"""Generate docs/compare.md from the comparison spec's schema, so its documentation cannot drift from the code.

    tunesmith docs --compare > docs/compare.md      (a test fails when the file is stale)
"""

from __future__ import annotations

from tunesmith.compare.spec import CompareSpec, MergeStrategy
from tunesmith.recipe.docs import schema_tables


def render_compare_docs() -> str:
    """The spec reference: every key, type, default and meaning, block by block, after a short example."""
    lines = [
        "# Comparison spec reference",
        "",
        "Generated from the schema in `tunesmith/compare/spec.py` by `tunesmith docs --compare`; do not edit by hand.",
        "`tunesmith compare SPEC` trains every strategy on the shared recipe (each deep-merged with its overrides),",
        "evaluates each and the base model alike on the same items, and writes the trade-off table into the",
        "comparison folder. Every block rejects unknown keys (with a did-you-mean). A shipped example:",
        "`recipes/compare/smollm2-forgetting.yaml`.",
        "",
        "```yaml",
        "name: lora-vs-full",
        "recipe: {model: ../shared/fixtures/stories260k, data: {train: ../shared/data/alpaca_1k.jsonl, eval: 0.1},",
        "         train: {max_steps: 20}}",
        "strategies:",
        "  lora: {adapter: lora}",
        "  full: {adapter: full}",
        "  lora-lr3: {adapter: lora, train: {lr: 3e-4}}",
        "  lora-ties: {merge: {runs: [lora, lora-lr3], method: ties}}   # merged from two trained runs, then evaluated",
        "eval: {suite: [heldout, hellaswag], limit: 40, data_dir: ../shared/data}",
        "```",
        "",
    ]
    schema_tables(CompareSpec, "", lines)
    schema_tables(MergeStrategy, "strategies.NAME.merge.", lines)
    return "\n".join(lines) + "\n"
