"""`tunesmith advise`: the outcome at the table's extremes and for mixed answers, with reasons; the paradigm;
a written recipe that `tunesmith validate` accepts; flags, YAML file and questionnaire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tunesmith.advise import advise, read_answers
from tunesmith.advise.decide import BOTH, decide, paradigm
from tunesmith.cli import app
from tunesmith.errors import UserError
from tunesmith.plan.hardware import gpu_device
from tunesmith.testing.tiny import save_tiny

ALL_RAG = dict(freshness="daily", citations="yes", pairs="none", format="low", vocabulary="general", latency="relaxed")
ALL_FT = dict(freshness="static", citations="no", pairs="thousands", format="high", vocabulary="dense", latency="tight")


def test_extremes() -> None:
    rag = decide(ALL_RAG)
    assert rag.outcome == "rag" and rag.scores == {"rag": 6, "finetune": 0}
    assert "no labelled pairs" in rag.reasons[0]
    ft = decide(ALL_FT)
    assert ft.outcome == "finetune" and ft.scores == {"rag": 0, "finetune": 8}
    assert ft.votes["latency"].side == "finetune" and "retrieval hop" in ft.votes["latency"].reason


def test_mixed_answers() -> None:
    both = decide({**ALL_FT, "freshness": "daily", "citations": "yes"})  # fresh cited facts, strict format
    assert both.outcome == "both" and both.summary == BOTH
    no_pairs = decide({**ALL_FT, "pairs": "none"})  # everything pulls to fine-tuning, but nothing to train on
    assert no_pairs.outcome == "rag" and no_pairs.scores["finetune"] > no_pairs.scores["rag"]
    cited = decide(dict(freshness="static", citations="yes", pairs="hundreds", format="low", vocabulary="general",
                        latency="relaxed"))  # citations need retrieval; pairs and a static domain allow tuning
    assert cited.outcome == "both" and cited.scores == {"rag": 2, "finetune": 2}
    weak = decide({**ALL_FT, "freshness": "monthly", "format": "low", "vocabulary": "general", "latency": "moderate",
                   "pairs": "hundreds"})  # one lean each way
    assert weak.outcome == "rag" and weak.scores == {"rag": 1, "finetune": 1} and "tie" in weak.reasons[0]
    tie = decide(dict(freshness="monthly", citations="no", pairs="hundreds", format="low", vocabulary="general",
                      latency="moderate"))
    assert tie.outcome == "rag" and tie.scores == {"rag": 1, "finetune": 1} and "tie" in tie.reasons[0]
    ft = decide(dict(freshness="monthly", citations="no", pairs="hundreds", format="high", vocabulary="some",
                     latency="moderate"))
    assert ft.outcome == "finetune" and ft.scores == {"rag": 1, "finetune": 3}


def test_paradigm_rules() -> None:
    far = paradigm({**ALL_FT, "domain_text": "plentiful", "preference": "yes"}, {"full": True, "lora": True})
    assert far.steps == ["cpt", "sft", "dpo"] and far.adapter == "full"
    assert paradigm({**ALL_FT, "pairs": "hundreds"}, {"full": True, "lora": True}).adapter == "lora"
    assert paradigm(ALL_FT, {"full": False, "lora": True}).adapter == "lora"
    assert paradigm(ALL_FT, {"full": False, "lora": False, "qlora": True}).adapter == "qlora"
    assert paradigm({**ALL_FT, "domain_text": "some"}, {"lora": True}).steps == ["sft"]


def test_7b_adapter_follows_gpu_memory_and_data() -> None:
    small = advise({**ALL_FT, "pairs": "hundreds"}, model="7B", device=gpu_device("t4-16g"), seq_len=2048)
    mid = advise(ALL_FT, model="7B", device=gpu_device("l4-24g"), seq_len=2048)
    big = advise({**ALL_FT, "pairs": "hundreds"}, model="7B", device=gpu_device("h100-80g"), seq_len=2048)
    assert small.paradigm.adapter == "qlora" and mid.paradigm.adapter == "lora"  # 14 GB of bf16 weights
    assert big.paradigm.adapter == "lora"  # hundreds of pairs: PEFT even where full would fit
    assert advise(ALL_FT, model="7B", device=gpu_device("a100-80g"), seq_len=2048).paradigm.adapter == "lora"
    assert small.recipe is None and any("give --out FILE" in n for n in small.notes)


def test_a_size_alone_writes_a_recipe_with_fill_ins(tmp_path: Path) -> None:
    """`advise --model 135M --out R.yaml` writes the recipe; what a size cannot say (which model, which data)
    is a FILL-IN value the notes name, so `validate` fails on it loudly rather than on a guess."""
    out = tmp_path / "r.yaml"
    result = advise(ALL_FT, model="135M", device=gpu_device("l4-24g"), seq_len=512, out=out)
    assert result.recipe == out and out.is_file()
    text = out.read_text()
    assert "model: FILL-IN-135M-model" in text and "train: FILL-IN-data.jsonl" in text and "max_seq_len: 512" in text
    assert any("replace the FILL-IN values" in n and "135M" in n for n in result.notes)
    given = advise(ALL_FT, model="135M", data="mine.jsonl", device=gpu_device("l4-24g"), out=tmp_path / "g.yaml")
    assert "train: mine.jsonl" in given.recipe.read_text()
    assert any("model:" in n and "data.train" not in n for n in given.notes if "FILL-IN" in n)


def test_answers_from_file_flags_and_questions(tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    file.write_text("freshness: daily\ncitations: true\npairs: none\n")
    asked: list[str] = []
    answers = read_answers(file, {"pairs": "Hundreds"},
                           lambda name, question, choices: asked.append(name) or choices[-1])
    assert answers["citations"] == "yes" and answers["pairs"] == "hundreds"  # flags win over the file
    assert asked == ["format", "vocabulary", "latency"]
    with pytest.raises(UserError, match="did you mean 'daily'"):
        read_answers(None, {"freshness": "dialy"}, None)
    with pytest.raises(UserError, match="no answer for"):
        read_answers(None, {"freshness": "daily"}, None)


@pytest.fixture
def tiny_model_and_data(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"add {i} and 1", "output": str(i + 1)}) + "\n"
                            for i in range(40)))
    return save_tiny("llama", tmp_path / "model", vocab_size=300), data


def test_written_recipe_validates(tiny_model_and_data: tuple[Path, Path], tmp_path: Path) -> None:
    from tunesmith.commands.validate import validate_recipe

    model, data = tiny_model_and_data
    out = tmp_path / "advised.yaml"
    result = CliRunner().invoke(app, [
        "advise", "--freshness", "static", "--citations", "no", "--pairs", "hundreds", "--format", "high",
        "--vocabulary", "some", "--latency", "tight", "--preference", "yes", "--model", str(model),
        "--data", str(data), "--memory", "8GiB", "--max-seq-len", "128", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "outcome: fine-tune" in result.output and "SFT -> DPO with lora" in result.output
    assert out.is_file() and "adapter: lora" in out.read_text()
    validate_recipe(out, [])  # raises on any problem


def test_questionnaire_asks_what_is_missing(tiny_model_and_data: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(app, ["advise", "--interactive", "--freshness", "daily"],
                                input="yes\nthousands\nhigh\ngeneral\ntight\n")
    assert result.exit_code == 0, result.output
    assert "Must answers cite their sources?" in result.output
    assert "outcome: both: fine-tune for how to respond, RAG for what to respond with" in result.output
