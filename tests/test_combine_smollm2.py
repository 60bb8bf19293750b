"""`tunesmith merge A B --method ties` on two short LoRA runs of a real chat model, SmolLM2-135M-Instruct, and
`tunesmith serve` answering from the merged folder through the official openai client.

Slow (two short trainings of a 135M model on CPU); skipped when the shared fixtures are absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs import read_run
from tunesmith.serve.local import local_server
from tunesmith.serve.server import ServeOptions
from tunesmith.train.loop import train

pytestmark = pytest.mark.slow
openai = pytest.importorskip("openai")


def _run(name: str, model: Path, rows: list[str], out: Path) -> Path:
    data = out / f"{name}.jsonl"
    data.write_text("".join(rows))
    recipe = recipe_from_dict({
        "name": name, "model": str(model), "output": str(out), "adapter": "lora",
        "data": {"train": str(data), "eval": 0.0, "cache": False},
        "train": {"max_steps": 3, "batch_size": 2, "max_seq_len": 128, "lr": 2e-4, "threads": 2},
        "adapter_args": {"r": 8, "alpha": 16},
    })
    return train(recipe, advice=False).path


def test_ties_merge_of_two_smollm2_runs_is_served(smollm2: Path, shared_data: Path, tmp_path: Path) -> None:
    alpaca = (shared_data / "alpaca_1k.jsonl").read_text().splitlines(keepends=True)
    first = _run("first", smollm2, alpaca[:12], tmp_path)
    second = _run("second", smollm2, alpaca[500:512], tmp_path)
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", str(first), str(second), "--method", "ties", "--out", str(out)])
    assert result.exit_code == 0, result.output
    record = read_run(out)
    assert record.extra["merge"]["method"] == "ties" and record.base_model == read_run(first).base_model
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 8

    with local_server(ServeOptions([str(out)], max_adapters=2)) as running:
        client = openai.OpenAI(base_url=running.url, api_key="none", max_retries=0)
        assert "merged" in [m.id for m in client.models.list().data]
        answer = client.chat.completions.create(model="merged", max_tokens=16, temperature=0, messages=[
            {"role": "user", "content": "What is the capital of France?"}]).choices[0].message.content
    print(f"\nSmolLM2 ties merge served: {answer!r}")
    assert answer.strip()
