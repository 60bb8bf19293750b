"""Evaluated tiny runs for the dashboard's views: a real `tunesmith compare` folder (its strategies trained
in this process instead of child processes, to stay fast) and a real `tunesmith eval --base` with HellaSwag,
MT-Bench and the judge suite against a deterministic local judge, so eval.json and eval_samples.jsonl hold
judge verdicts and per-item results of both models."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def judge_app() -> Any:
    """An OpenAI-compatible judge: rates an answer 1 + (its length mod 10); of two answers the longer wins."""
    import fastapi

    app = fastapi.FastAPI()

    def answer(prompt: str, who: str) -> str:
        """The answer to judge: the last turn of a conversation, or the one answer of a first turn."""
        turns = re.findall(rf"### {who}:\n(.*?)\n\n(?:### User|<\|The End)", prompt, re.DOTALL)
        return turns[-1] if turns else re.search(rf"{who}'s Answer\]\n(.*?)\n\[The End", prompt, re.DOTALL).group(1)

    def reply(prompt: str) -> str:
        if "Assistant A" in prompt:
            a, b = len(answer(prompt, "Assistant A")), len(answer(prompt, "Assistant B"))
            return f"Compared. [[{'A' if a > b else 'B' if b > a else 'C'}]]"
        length = len(answer(prompt, "Assistant"))
        return f"Judged an answer of {length} characters. Rating: [[{1 + length % 10}]]"

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "local-judge", "object": "model"}]}

    @app.post("/v1/chat/completions")
    def complete(body: dict[str, Any]) -> dict[str, Any]:
        content = reply(body["messages"][-1]["content"])
        return {"id": "j", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}

    return app


def eval_data_dir(root: Path) -> Path:
    """HellaSwag and a small MT-Bench (the first question of each category) from ../shared/data, in `root`."""
    if not (SHARED_DATA / "mt_bench" / "question.jsonl").is_file():
        pytest.skip(f"benchmark data not found in {SHARED_DATA} (the shared folder beside the checkout)")
    folder = root / "bench-data"
    (folder / "mt_bench").mkdir(parents=True)
    for file in SHARED_DATA.glob("hellaswag*.jsonl"):
        (folder / file.name).symlink_to(file)
    seen, picked = set(), []
    for line in (SHARED_DATA / "mt_bench" / "question.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["category"] not in seen:
            seen.add(row["category"])
            picked.append(line)
    (folder / "mt_bench" / "question.jsonl").write_text("\n".join(picked) + "\n")
    for file in (SHARED_DATA / "mt_bench").glob("reference_answer*.jsonl"):
        (folder / "mt_bench" / file.name).symlink_to(file)
    return folder


def build_comparison(root: Path, model: Path, data: Path, data_dir: Path, patch: pytest.MonkeyPatch) -> Path:
    """`tunesmith compare` of LoRA and full fine-tuning on HellaSwag and the held-out set."""
    import tunesmith.compare as compare
    from tunesmith.recipe.spec import load_recipe
    from tunesmith.runs.record import read_run
    from tunesmith.train.loop import train

    def train_here(recipe_file: Path, run_dir: Path, log: Path, rewards_files: tuple[Path, ...] = ()) -> dict[str, Any]:
        begin = time.perf_counter()
        train(load_recipe(recipe_file), overwrite=True)
        return {"wall_seconds": round(time.perf_counter() - begin, 1), "resumed": False,
                "peak_rss_mib": read_run(run_dir).state["peak_memory_mib"]}

    spec = root / "spec.yaml"
    recipe = {"model": str(model), "data": {"train": str(data), "eval": 0.1, "template": "plain"},
              "train": {"max_steps": 4, "batch_size": 4, "max_seq_len": 64, "eval_every": 2, "threads": 1,
                        "mixed_precision": "no"},
              "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8}}
    spec.write_text(json.dumps({
        "name": "cmp", "out": str(root / "cmp"), "recipe": recipe,
        "strategies": {"lora": {"train": {"lr": 1e-3}}, "full": {"adapter": "full", "train": {"lr": 1e-2}}},
        "eval": {"suites": ["heldout", "hellaswag"], "limit": 24, "data_dir": str(data_dir), "max_new_tokens": 4},
    }))
    patch.setattr(compare, "train_child", train_here)
    return compare.run_comparison(spec)


def evaluate_with_judge(run_dir: Path, data_dir: Path, judge_url: str, root: Path) -> dict[str, Any]:
    """`tunesmith eval RUN --base` on the held-out set, HellaSwag, MT-Bench and the judge suite."""
    from tunesmith.evaluate.run_eval import EvalOptions, run_eval

    questions = root / "judge_questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in (
        {"question": "Name a colour."}, {"question": "What is 2 + 2?", "reference": "4"})))
    options = EvalOptions(target=str(run_dir), suites=["heldout", "hellaswag", "mtbench", "judge"], base=True,
                          limit=100, data_dir=str(data_dir), judge_url=judge_url, judge_questions=str(questions),
                          max_new_tokens=6, dtype="fp32")
    return run_eval(options).record
