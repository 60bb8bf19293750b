"""HellaSwag and GSM8K through `tunesmith eval`, scored on hand-made items whose answers are known: the model
is a tiny Llama whose weights are set by hand so that it can only say " 8 8 8 ..." (its layers add nothing,
and its head maps the token read to the next: "Ġ" -> "8", anything else -> "Ġ"). So it picks the ending
"8 8" whenever one is offered, and answers 8 to every problem; a scorer that returned anything else (a
constant, a random number) fails these tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.testing.tiny import save_tiny


@pytest.fixture(scope="module")
def says_eight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = save_tiny("llama", tmp_path_factory.mktemp("eight") / "model", vocab_size=300)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    space, eight = tokenizer.convert_tokens_to_ids(["Ġ", "8"])
    assert tokenizer(" 8 8", add_special_tokens=False)["input_ids"] == [space, eight, space, eight]
    with torch.no_grad():
        for layer in model.model.layers:  # every layer adds zero to the residual stream
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        basis = torch.eye(model.config.hidden_size)
        embed = model.model.embed_tokens.weight
        embed.copy_(basis[2].expand_as(embed))  # class "other"
        embed[space], embed[eight] = basis[0], basis[1]
        model.model.norm.weight.fill_(1.0)
        head = model.lm_head.weight
        head.zero_()
        head[eight] = 3.0 * basis[0]  # after "Ġ": "8" (logit 24 after RMSNorm scales e_i by 8)
        head[space] = 3.0 * (basis[1] + basis[2])  # after "8" or anything else: "Ġ"
    model.save_pretrained(folder)
    return folder


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _eval(model: Path, out: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["eval", str(model), "--out", str(out), "--dtype", "fp32", "--shots", "0", *args])
    assert result.exit_code == 0, result.output
    return json.loads((out / "eval.json").read_text())["results"]


def test_hellaswag_scores_known_answers(says_eight: Path, tmp_path: Path) -> None:
    endings = ["the cat sat down.", "8 8", "they go home.", "a dog barks."]
    rows = [{"activity_label": "Test", "ctx_a": f"Item {i}.", "ctx_b": "then", "endings": endings, "label": gold}
            for i, gold in enumerate([1, 0, 1, 1, 3])]  # the model picks ending 1: right 3 times of 5
    file = _jsonl(tmp_path / "hellaswag.jsonl", rows)
    scores = _eval(says_eight, tmp_path / "out", "--suite", "hellaswag", "--hellaswag", str(file))["hellaswag"]
    assert scores["n"] == 5 and scores["acc"] == pytest.approx(0.6) and scores["acc_norm"] == pytest.approx(0.6)


def test_gsm8k_scores_known_answers(says_eight: Path, tmp_path: Path) -> None:
    answers = [8, 3, 8, 8]  # the model answers 8: right 3 times of 4 (flexible), never in "#### 8" form (strict)
    rows = [{"question": f"How many? ({i})", "answer": f"so it is {n}\n#### {n}"} for i, n in enumerate(answers)]
    file = _jsonl(tmp_path / "gsm8k.jsonl", rows)
    scores = _eval(says_eight, tmp_path / "out", "--suite", "gsm8k", "--gsm8k", str(file),
                   "--max-new-tokens", "6")["gsm8k"]
    assert scores["n"] == 4 and scores["exact_match"] == pytest.approx(0.75) and scores["strict_match"] == 0.0
    assert scores["examples"][0]["prediction"].split() == ["8", "8", "8"]
