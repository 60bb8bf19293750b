"""`tunesmith compare SPEC`: several strategies on the same data, budget and evaluation; the measured
trade-off table (markdown, CSV, PNG) in one comparison folder.

Reads top to bottom: load and validate the spec and every strategy's recipe; for each strategy not yet
finished, train it in a child process (peak memory, wall time) and evaluate it; score the base once; build
the rows and write comparison.md, comparison.csv and comparison.png. Interrupted, it resumes: a strategy
with a finished run, its measurement and its eval.json is skipped; an unfinished one resumes or restarts.
Merge strategies (`{merge: {runs: [A, B], method: ties}}`) come after the trained ones: their runs merged
into one run folder (compare/merging.py), then evaluated the same way.

    out/name/
      spec.yaml  recipes/<strategy>.yaml  runs/<strategy>/  measures/<strategy>.json  logs/
      base/eval.json  comparison.md  comparison.csv  comparison.png
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from tunesmith.compare.charts import write_charts
from tunesmith.compare.evaluation import evaluate_base, evaluate_run
from tunesmith.compare.execute import load_measure, save_measure, train_child
from tunesmith.compare.merging import merge_strategy
from tunesmith.compare.rows import comparison_rows
from tunesmith.compare.run_files import run_finished
from tunesmith.compare.spec import load_spec, merge_strategies, strategy_recipes, write_recipe
from tunesmith.compare.table import write_csv, write_markdown
from tunesmith.recipe.user_code import NO_USER_CODE, UserCode
from tunesmith.runs.eval_file import read_eval

console = Console(stderr=True)


def run_comparison(spec_path: Path, fresh: bool = False, user_code: UserCode = NO_USER_CODE) -> Path:
    """Run (or resume) the comparison of `spec_path`; returns the comparison folder.

    `user_code`: the --rewards-file files the strategies may name; each training child gets them too."""
    spec = load_spec(spec_path)
    recipes = strategy_recipes(spec, user_code)  # every strategy validated before anything trains
    merges = merge_strategies(spec)
    folder = spec.folder
    if fresh and folder.exists():
        shutil.rmtree(folder)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_path, folder / "spec.yaml")
    for name, recipe in recipes.items():
        run_dir = recipe.run_dir
        measure = load_measure(folder, name)
        if run_finished(run_dir) and measure is not None and read_eval(run_dir) is not None:
            console.print(f"{name}: finished earlier, skipped")
        else:
            if not (run_finished(run_dir) and measure is not None):
                console.print(f"[bold]{name}[/]: training")
                recipe_file = write_recipe(recipe, folder / "recipes" / f"{name}.yaml")
                measure = train_child(recipe_file, run_dir, folder / "logs" / f"{name}.log", user_code.files)
                save_measure(folder, name, measure)
            console.print(f"[bold]{name}[/]: evaluating")
        evaluate_run(run_dir, spec.eval)  # into the run folder, where comparison_rows reads it
    for name, how in merges.items():
        run_dir = folder / "runs" / name
        if not (run_finished(run_dir) and load_measure(folder, name) is not None):
            console.print(f"[bold]{name}[/]: merging {', '.join(how.runs)} by {how.method}")
            save_measure(folder, name, merge_strategy(how, recipes, run_dir))
        evaluate_run(run_dir, spec.eval)
    evaluate_base(next(iter(recipes.values())).run_dir, spec.eval, folder)
    names = [*recipes, *merges]
    rows = comparison_rows(folder, names)
    title = f"comparison {spec.name}: {', '.join(names)} on the same data, budget and evaluation"
    write_markdown(rows, folder / "comparison.md", title)
    write_csv(rows, folder / "comparison.csv")
    write_charts(rows[1:], folder / "comparison.png", title)
    print((folder / "comparison.md").read_text())
    return folder
