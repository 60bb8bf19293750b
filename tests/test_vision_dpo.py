"""DPO on a vision-language model: parity with TRL 1.16's own vision DPO (its collator builds the batch from the
same rows and pictures, its `_compute_loss` and `compute_ref_log_probs` score it) on a tiny random LLaVA, and a
short `tunesmith train` / `validate` of DPO + LoRA on shape pictures.

TRL is the reference only (never imported by tunesmith/)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.data.pipeline import prepare_data
from tunesmith.data.types import IGNORE_INDEX
from tunesmith.methods.dpo.objective import Dpo
from tunesmith.methods.shared.preference import sequence_logps
from tunesmith.methods.shared.reference import forward
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.shapes import draw_shape
from tunesmith.testing.vlm import IM_END, chat_template, save_tiny_vlm

SHAPES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "circle")]


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vlm("llava", tmp_path_factory.mktemp("vdpo") / "llava", seed=3)


def write_pairs(folder: Path, count: int, seed: int = 0) -> Path:
    """TRL-style preference rows (image part in the prompt, `images` column, paths relative to the file)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rng, rows = random.Random(seed), []
    for i in range(count):
        colour, shape = SHAPES[i % len(SHAPES)]
        draw_shape(colour, shape, rng=rng).save(folder / "img" / f"{i}.png")
        rows.append({"images": [f"img/{i}.png"],
                     "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}],
                     "chosen": [{"role": "assistant", "content": [{"type": "text", "text": f"a {colour} {shape}"}]}],
                     "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "a purple star" + "!" * i}]}]})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _trl_rows(data: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    return [{**row, "images": [Image.open(data.parent / ref).convert("RGB") for ref in row["images"]]} for row in rows]


def _no_glue_template(folder: Path) -> None:
    """Turns closed by <|im_end|> with nothing after it: TRL scores the template's text after the answer (ChatML's
    newline) and we do not (as for text pairs), so on this template both score exactly the same tokens."""
    (folder / "chat_template.jinja").write_text(chat_template("<image>").replace(IM_END + "\n", IM_END))


def test_vision_dpo_equals_trl(llava: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText
    from trl import DPOConfig, DPOTrainer

    folder = tmp_path / "llava"
    save_tiny_vlm("llava", folder, seed=3)
    _no_glue_template(folder)
    data = write_pairs(tmp_path, 4)
    recipe = recipe_from_dict({
        "name": "p", "model": str(folder), "method": "dpo", "output": str(tmp_path / "runs"), "dpo": {"beta": 0.5},
        "data": {"train": str(data), "eval": 0.0}, "model_options": {"dtype": "fp32"},
        "train": {"batch_size": 4, "max_seq_len": 128, "mixed_precision": "no", "max_steps": 1, "shuffle": False}})
    tokenizer = load_tokenizer(str(folder))
    prepared = prepare_data(recipe, tokenizer)
    base = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    torch.manual_seed(0)  # init_lora_weights=False: random B, so the policy differs from the adapter-disabled reference
    trainer = DPOTrainer(model=base, processing_class=_processor(folder),
                         train_dataset=Dataset.from_list(_trl_rows(data)),
                         args=DPOConfig(output_dir=str(tmp_path / "trl"), report_to="none", bf16=False, beta=0.5,
                                        max_length=None),
                         peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model = trainer.model
    ours = Dpo(recipe, prepared, tokenizer, model)
    batch = ours.step_batches(0, model)[0]
    theirs = trainer.data_collator(_trl_rows(data))

    # The same sequences, pictures and scored tokens, from TRL's own collator.
    mask = (batch["labels"] != IGNORE_INDEX).long()
    for row in range(8):
        length = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :length].tolist() == theirs["input_ids"][row, :length].tolist()
        assert mask[row, :length].tolist() == theirs["completion_mask"][row, :length].tolist()
        assert int(theirs["attention_mask"][row].sum()) == length
    assert torch.equal(batch["pixel_values"], theirs["pixel_values"])

    # Per-pair log-probs of the policy and of the adapter-disabled reference, and the loss and its metrics.
    with torch.no_grad():
        logps = sequence_logps(forward(model, batch)[0], batch["labels"])
        ref = ours._reference_logps(model, batch)
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(model, theirs)
    torch.testing.assert_close(ref, torch.cat([ref_chosen, ref_rejected]), atol=1e-5, rtol=0)
    for pair in range(4):
        trainer._compute_loss(model, trainer.data_collator(_trl_rows(data)[pair:pair + 1]), False)
        logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
        assert logps[pair].item() == pytest.approx(logged["logps/chosen"], abs=1e-5)
        assert logps[4 + pair].item() == pytest.approx(logged["logps/rejected"], abs=1e-5)
    loss_sum, metrics = ours.loss_sum(model, batch)
    trl_loss = trainer._compute_loss(model, theirs, False)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert loss_sum.item() / 4 == pytest.approx(trl_loss.item(), abs=1e-5)
    assert metrics["margin"] / 4 == pytest.approx(logged["rewards/margins"], abs=1e-5)
    assert metrics["accuracy"] / 4 == pytest.approx(logged["rewards/accuracies"], abs=1e-6)
    assert abs(metrics["margin"]) > 1e-3, "the random adapter should move the policy away from the reference"


def test_on_chatml_trl_also_scores_the_newline_after_the_answer(llava: Path, tmp_path: Path) -> None:
    """The one difference from TRL, by design (as for text pairs): the template's text after the end-of-turn
    token is not part of the answer we score."""
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    from tunesmith.vision.pairs import collate_image_pairs, image_pairs

    data = write_pairs(tmp_path, 2)
    processor = _processor(llava)
    prepared = prepare_data(recipe_from_dict({
        "name": "p", "model": str(llava), "method": "dpo", "output": str(tmp_path / "runs"),
        "data": {"train": str(data), "eval": 0.0}}), load_tokenizer(str(llava)))
    pairs, dropped = image_pairs(processor, prepared.train_examples, 128)
    ours = collate_image_pairs(processor, pairs, 128, None)
    theirs = DataCollatorForVisionPreference(processor)(_trl_rows(data))
    for row in range(4):
        scored = (ours["labels"][row] != IGNORE_INDEX).nonzero().flatten().tolist()
        extra = [i for i in theirs["completion_mask"][row].nonzero().flatten().tolist() if i not in scored]
        assert len(extra) == 1 and extra[0] == scored[-1] + 1
        assert processor.tokenizer.decode(theirs["input_ids"][row, extra]) == "\n"
        assert processor.tokenizer.decode(ours["input_ids"][row, scored[-1]]) == IM_END


def _processor(folder: Path) -> Any:
    from tunesmith.vision.processor import load_processor

    return load_processor(str(folder))


def _recipe(llava: Path, data: Path, out: Path) -> dict[str, Any]:
    return {"name": "vdpo", "model": str(llava), "method": "dpo", "adapter": "lora", "output": str(out),
            "data": {"train": str(data), "eval": 0.2}, "adapter_args": {"r": 4, "alpha": 8},
            "vision": {"train_projector": True}, "dpo": {"beta": 0.5},
            "train": {"max_steps": 4, "batch_size": 4, "max_seq_len": 128, "lr": 5e-3, "threads": 2}}


@pytest.fixture(scope="module")
def qwen2_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vlm("qwen2_vl", tmp_path_factory.mktemp("vdpo") / "qwen2_vl", seed=3)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_dpo_lora_on_picture_pairs_raises_the_margin(family: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    from tunesmith.train.loop import train
    from tunesmith.vision.families import vision_family

    folder = request.getfixturevalue(family)
    run = train(recipe_from_dict(_recipe(folder, write_pairs(tmp_path, 10), tmp_path / "runs"))).path
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"step"' in line]
    trained = [s for s in steps if "margin" in s]
    assert len(trained) == 4
    assert trained[0]["margin"] == pytest.approx(0.0, abs=1e-6)  # LoRA starts at the reference
    assert trained[-1]["margin"] > 0.5 and trained[-1]["accuracy"] == 1.0
    assert trained[-1]["rewards/chosen"] > 0 > trained[-1]["rewards/rejected"]
    assert any("eval_margin" in s for s in steps), "the held-out pairs are scored with their pictures"
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    parts = vision_family(json.loads((folder / "config.json").read_text()))
    tower, projector = parts.vision_tower + ".", parts.projector + "."
    assert not any(tower in key and projector not in key for key in saved), "the tower stays frozen"
    assert any(projector in key for key in saved), "vision.train_projector trains the projector"
    assert (run / "adapter" / "processor_config.json").exists(), "the processor is saved beside the adapter"


def answer_logps_alone(model: Any, processor: Any, prompt: list[dict[str, Any]], answer: list[dict[str, Any]],
                       picture: Image.Image) -> tuple[float, int]:
    """Summed log-probs of one answer, from transformers' own forward on that chat alone (no padding, no batch):
    the answer runs from the end of the prompt's generation prompt through the closing <|im_end|>. Also its
    token count."""
    full = processor.apply_chat_template(prompt + answer, tokenize=False)
    start = processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[full], images=[[picture]], return_tensors="pt", add_special_tokens=False)
    begin = processor(text=[start], images=[[picture]], return_tensors="pt")["input_ids"].shape[1]
    ids = inputs["input_ids"][0]
    end = max(i for i, t in enumerate(ids.tolist()) if t == processor.tokenizer.convert_tokens_to_ids(IM_END)) + 1
    with torch.no_grad():
        logits = model(**inputs).logits[0].float()
    logps = torch.log_softmax(logits[begin - 1:end - 1], dim=-1)
    return float(logps.gather(-1, ids[begin:end, None]).sum()), end - begin


def test_qwen2_vl_pair_logps_equal_each_chat_scored_alone(qwen2_vl: Path, tmp_path: Path) -> None:
    """One batch of 2B rows (chosen first, right-padded, image_grid_thw and 3-D rope positions for every row)
    gives each answer the log-prob transformers gives that chat alone."""
    from transformers import AutoModelForImageTextToText

    from tunesmith.vision.pairs import plan_image_pairs

    data = write_pairs(tmp_path, 4)
    recipe = recipe_from_dict({"name": "p", "model": str(qwen2_vl), "method": "dpo", "output": str(tmp_path / "r"),
                               "data": {"train": str(data), "eval": 0.0}, "train": {"max_seq_len": 256}})
    model = AutoModelForImageTextToText.from_pretrained(qwen2_vl, dtype=torch.float32).eval()
    plan = plan_image_pairs(recipe, prepare_data(recipe, load_tokenizer(str(qwen2_vl))), model)
    batch = plan.collate(plan.train)
    assert batch["input_ids"].shape[0] == 8 and batch["image_grid_thw"].shape[0] == 8
    with torch.no_grad():
        logps = sequence_logps(forward(model, batch)[0], batch["labels"])
    rows = _trl_rows(data)
    alone = [answer_logps_alone(model, plan.processor, row["prompt"], row[side], row["images"][0])[0]
             for side in ("chosen", "rejected") for row in rows]
    torch.testing.assert_close(logps, torch.tensor(alone), atol=1e-5, rtol=0)
    assert len({round(x, 3) for x in alone}) == 8


def test_validate_reports_the_pictures_of_preference_rows(llava: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(llava, write_pairs(tmp_path, 6), tmp_path / "runs")))
    result = CliRunner().invoke(app, ["validate", str(recipe)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output[-3000:]
    assert "preference" in result.output
    assert "1 / 1 / 1 (6 of 6 rows have images)" in result.output


def test_full_fine_tuning_precomputed_reference_equals_the_frozen_copy_on_idefics3(tmp_path: Path) -> None:
    """Idefics3's pixel_attention_mask reaches both forwards; the reference sees the pictures when precomputed
    before the first update and when run by a frozen copy each step alike."""
    from tunesmith.train.loop import train

    folder = save_tiny_vlm("idefics3", tmp_path / "idefics3", seed=3)
    data = write_pairs(tmp_path, 6)
    margins = []
    for precompute in (False, True):
        recipe = {**_recipe(folder, data, tmp_path / f"runs-{precompute}"), "adapter": "full", "adapter_args": {},
                  "dpo": {"beta": 0.5, "precompute_ref": precompute}}
        recipe["train"] = {**recipe["train"], "max_steps": 3, "batch_size": 3, "lr": 1e-3}
        run = train(recipe_from_dict(recipe)).path
        steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        margins.append([s["margin"] for s in steps if "margin" in s])
    assert margins[0] == pytest.approx(margins[1], abs=1e-5)
    assert margins[0][0] == pytest.approx(0.0, abs=1e-6) and margins[0][-1] > 0.5
