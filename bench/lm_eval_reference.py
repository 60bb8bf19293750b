"""lm-evaluation-harness as an independent reference scorer for our MMLU and HellaSwag (bench and tests only).

The harness never sees our prompt code. Local task definitions point its own templates at the files in
../shared/data: MMLU includes the harness's `mmlu/default/_default_template_yaml` (its question text, letters
and description) and only maps our header-less CSV columns to its `question/choices/answer` fields;
HellaSwag includes the harness's `hellaswag.yaml` and its own `process_docs`. Shots come from the evaluated
split with the `first_n` sampler (the item itself removed), as MMLU's dev examples would be. The model runs
through the harness's Hugging Face backend (`hf`, HFLM) from a model folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UTILS = '''
from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_docs  # noqa: F401 (the harness's own)


def mmlu_docs(dataset):
    """Header-less hendrycks CSV rows -> the cais/mmlu fields the harness's template reads."""
    def convert(doc):
        return {"question": doc["question"], "choices": [doc["A"], doc["B"], doc["C"], doc["D"]],
                "answer": "ABCD".index(doc["letter"].strip())}
    return dataset.map(convert)
'''


@dataclass
class HarnessRun:
    """Chosen answers by item id (ours: "<subject>/<index>" for MMLU, "<index>" for HellaSwag) and the time."""

    acc: dict[str, dict[str, int]]
    acc_norm: dict[str, dict[str, int]]
    seconds: float
    items: int


def _harness_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def write_tasks(folder: Path, data_dir: Path) -> dict[str, str]:
    """Write the local task YAMLs into `folder`; returns task name -> our benchmark ("mmlu:<subject>" or
    "hellaswag")."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(UTILS)
    template = _harness_dir() / "mmlu" / "default" / "_default_template_yaml"
    tasks = {}
    for csv in sorted((data_dir / "mmlu" / "test").glob("*_test.csv")):
        subject = csv.stem.removesuffix("_test")
        name = f"local_mmlu_{subject}"
        description = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}."
        (folder / f"{name}.yaml").write_text(
            f"include: {template}\ntask: {name}\ndataset_path: csv\ndataset_name: null\n"
            f"dataset_kwargs:\n  data_files:\n    test: {csv}\n"
            "  column_names: [question, A, B, C, D, letter]\n"
            "test_split: test\nfewshot_split: test\nfewshot_config:\n  sampler: first_n\n"
            "process_docs: !function utils.mmlu_docs\n"
            f"description: \"{description}\\n\\n\"\n")
        tasks[name] = f"mmlu:{subject}"
    hellaswag = min(data_dir.glob("hellaswag*.jsonl"))
    (folder / "local_hellaswag.yaml").write_text(
        f"include: {_harness_dir() / 'hellaswag' / 'hellaswag.yaml'}\ntask: local_hellaswag\ntag: []\n"
        f"dataset_path: json\ndataset_name: null\ndataset_kwargs:\n  data_files:\n    test: {hellaswag}\n"
        "training_split: null\nvalidation_split: null\ntest_split: test\nfewshot_split: test\n"
        "fewshot_config:\n  sampler: first_n\nprocess_docs: !function utils.hellaswag_docs\n")
    tasks["local_hellaswag"] = "hellaswag"
    return tasks


def run_harness(model_dir: str, task_folder: Path, tasks: dict[str, str], *, shots: int, limit: int | None,
                batch_size: int = 16, dtype: str = "float32") -> HarnessRun:
    """Score `tasks` with the harness's HF backend; the chosen answer of every item, by our item id."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_folder), include_defaults=False)
    started = time.perf_counter()
    out = simple_evaluate(model="hf", model_args={"pretrained": model_dir, "dtype": dtype, "device": "cpu"},
                          tasks=list(tasks), num_fewshot=shots, limit=limit, batch_size=batch_size,
                          task_manager=manager, log_samples=True, bootstrap_iters=0, verbosity="WARNING")
    seconds = time.perf_counter() - started
    acc: dict[str, dict[str, int]] = {}
    acc_norm: dict[str, dict[str, int]] = {}
    items = 0
    for task, ours in tasks.items():
        suite, _, subject = ours.partition(":")
        for sample in out["samples"][task]:
            item = f"{subject}/{sample['doc_id']}" if subject else str(sample["doc_id"])
            lls = [float(resp[0]) for resp in sample["filtered_resps"]]
            lengths = [len(choice) for choice in _choices(sample)]
            acc.setdefault(suite, {})[item] = _argmax(lls)
            acc_norm.setdefault(suite, {})[item] = _argmax([ll / n for ll, n in zip(lls, lengths)])
            items += 1
    return HarnessRun(acc, acc_norm, seconds, items)


def _choices(sample: dict[str, Any]) -> list[str]:
    """The choice strings of a logged sample: its requests' continuations without the target delimiter."""
    return [arguments[1].removeprefix(" ") for arguments in sample["arguments"]]


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)
