"""`tunesmith eval RUN --base` on a DPO run of a vision-language model (tiny random Qwen2-VL, LoRA): the held-out
pairs are scored as a text DPO run's are, on the prompt + chosen answer with its picture. The loss equals the
answers' NLL from transformers' forward on each chat alone, and the answers are compared with the chosen ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.test_vision_dpo import _recipe, _trl_rows, answer_logps_alone, write_pairs
from tunesmith.cli import app
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.vlm import save_tiny_vlm


def test_eval_scores_the_held_out_pairs_on_their_chosen_answers(tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from tunesmith.adapters.build import load_adapter
    from tunesmith.evaluate.heldout import heldout_from_run
    from tunesmith.models.load import load_tokenizer
    from tunesmith.runs.targets import resolve_target
    from tunesmith.train.loop import train
    from tunesmith.vision.processor import load_processor

    folder = save_tiny_vlm("qwen2_vl", tmp_path / "qwen2_vl", seed=3)
    data = write_pairs(tmp_path, 10)
    recipe = {**_recipe(folder, data, tmp_path / "runs"), "data": {"train": str(data), "eval": 0.4}}
    run = train(recipe_from_dict(recipe)).path
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", str(run), "--base", "--suite", "heldout", "--dtype", "fp32",
                                      "--max-new-tokens", "6", "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output[-3000:]
    record = json.loads((out / "eval.json").read_text())

    target = resolve_target(str(run))
    held_out = heldout_from_run(target, load_tokenizer(target.tokenizer_source)).examples
    rows = {row["rejected"][0]["content"][0]["text"]: row for row in _trl_rows(data)}
    held_rows = [rows[ex.rejected[-1].content] for ex in held_out]
    assert len(held_rows) == 4
    processor = load_processor(str(folder))
    base = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    tuned = load_adapter(AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32), run / "adapter")
    for model, results in ((tuned.eval(), record["results"]), (base, record["base_results"])):
        scored = [answer_logps_alone(model, processor, row["prompt"], row["chosen"], row["images"][0])
                  for row in held_rows]
        scores = results["heldout"]
        assert scores["tokens"] == sum(n for _, n in scored)
        assert scores["loss"] == pytest.approx(-sum(logp for logp, _ in scored) / scores["tokens"], abs=1e-5)
        assert scores["n"] == 4 and len(scores["intervals"]["contains"]["ci95"]) == 2
    assert record["results"]["heldout"]["loss"] < record["base_results"]["heldout"]["loss"], \
        "DPO raised the chosen answers' likelihood"
    samples = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    references = [s["reference"] for s in samples if s["model"] == "tuned" and s["suite"] == "heldout"]
    assert references == [row["chosen"][0]["content"][0]["text"] for row in held_rows]


def test_a_pair_after_a_multi_turn_prompt_scores_its_chosen_answer_alone() -> None:
    """As text pairs are tokenized (data.pairs): the prompt's own assistant turns carry no loss."""
    from tunesmith.data.types import Conversation, Message, Preference
    from tunesmith.evaluate.vision_heldout import image_chats

    prompt = (Message("user", "<image>What is it?"), Message("assistant", "a shape"), Message("user", "Which?"))
    pair = Preference(prompt, (Message("assistant", "a red circle"),), (Message("assistant", "a star"),), ("a.png",))
    assert image_chats([pair], "all") == ([Conversation(prompt + pair.chosen, ("a.png",))], "last")
    chat = Conversation(prompt + pair.chosen, ("a.png",))
    assert image_chats([chat], "all") == ([chat], "all")
