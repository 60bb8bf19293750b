"""Vision-language models on tiny random LLaVA, Idefics3 and Qwen2-VL folders: loading, what trains, labels of
image chats built by each family's processor, and `train` + `merge` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.adapters.build import apply_adapter
from tunesmith.data.types import IGNORE_INDEX, Conversation, Message
from tunesmith.errors import UserError
from tunesmith.models.load import load_model
from tunesmith.recipe.spec import AdapterArgs, Recipe, VisionSpec
from tunesmith.testing.shapes import draw_shape, shape_rows
from tunesmith.testing.vlm import save_tiny_vlm
from tunesmith.vision.collate import collate, encode
from tunesmith.vision.families import vision_family
from tunesmith.vision.processor import load_processor

PROCESSED = ["llava", "idefics3", "qwen2_vl"]  # Qwen2-VL without torchvision: vision/qwen2_vl.py


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    return {family: save_tiny_vlm(family, root / family) for family in ("llava", "idefics3", "qwen2_vl")}


def _chat(tmp_path: Path) -> Conversation:
    path = tmp_path / "red-circle.png"
    draw_shape("red", "circle").save(path)
    return Conversation((Message("user", "<image>What is in the picture?"), Message("assistant", "a red circle")),
                        images=(str(path),))


@pytest.mark.parametrize("family", ["llava", "idefics3", "qwen2_vl"])
def test_a_vlm_folder_loads_as_image_text_to_text(folders: dict[str, Path], family: str) -> None:
    model = load_model(str(folders[family]), dtype="fp32")
    assert "ForConditionalGeneration" in type(model).__name__
    assert model.config.model_type == family
    assert model.config.pad_token_id is not None


@pytest.mark.parametrize("family", ["llava", "idefics3", "qwen2_vl"])
def test_lora_wraps_only_the_language_model_and_the_tower_stays_frozen(folders: dict[str, Path], family: str) -> None:
    model = load_model(str(folders[family]), dtype="fp32")
    parts = vision_family(model.config)
    peft_model = apply_adapter(model, "lora", AdapterArgs(r=4, alpha=8), VisionSpec())
    wrapped = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and not n.endswith(("lora_A", "lora_B"))]
    assert wrapped and all(f".{parts.language_model}." in n for n in wrapped), wrapped
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable), trainable


@pytest.mark.parametrize("family", ["llava", "idefics3", "qwen2_vl"])
def test_train_projector_trains_the_projector_whole(folders: dict[str, Path], family: str) -> None:
    model = load_model(str(folders[family]), dtype="fp32")
    parts = vision_family(model.config)
    peft_model = apply_adapter(model, "lora", AdapterArgs(r=4, alpha=8), VisionSpec(train_projector=True))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    projector = {n for n in trainable if f".{parts.projector}." in n}
    assert projector and all("lora_" in n or n in projector for n in trainable)
    tower = [n for n, p in peft_model.named_parameters() if f".{parts.vision_tower}." in n
             and f".{parts.projector}." not in n]
    assert tower and not any(n in trainable for n in tower)


def test_full_fine_tuning_of_a_vlm_freezes_the_tower_unless_asked(folders: dict[str, Path]) -> None:
    model = apply_adapter(load_model(str(folders["llava"]), dtype="fp32"), "full", AdapterArgs(), VisionSpec())
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("model.vision_tower.", "model.multi_modal_projector.")) for n in frozen)
    model = apply_adapter(load_model(str(folders["llava"]), dtype="fp32"), "full", AdapterArgs(),
                          VisionSpec(train_vision_tower=True, train_projector=True))
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kind", ["prefix", "prompt", "ia3", "bottleneck"])
def test_a_kind_that_does_not_read_pictures_is_refused_for_a_vlm(folders: dict[str, Path], kind: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused by the kind's `reads_pictures` fact, with the kinds that work, both where the adapter wraps the
    model and at the start of `train` (before data or weights load: both loaders are made to fail)."""
    import tunesmith.train.loop as loop

    wanted = f"adapter: {kind} is not supported for vision-language models.*use lora, qlora, dora or full"
    with pytest.raises(UserError, match=wanted):
        apply_adapter(load_model(str(folders["llava"]), dtype="fp32"), kind, AdapterArgs(), VisionSpec())
    for loader in ("prepare_data", "load_model"):
        monkeypatch.setattr(loop, loader, lambda *a, **k: pytest.fail("data or weights loaded before the refusal"))
    recipe = _recipe("refused", folders["qwen2_vl"], tmp_path / "none.jsonl", tmp_path / "runs").model_copy(
        update={"adapter": kind})
    with pytest.raises(UserError, match=wanted):
        loop.train(recipe)


@pytest.mark.parametrize("family", PROCESSED)
def test_labels_fall_on_the_answer_only(folders: dict[str, Path], family: str, tmp_path: Path) -> None:
    processor = load_processor(str(folders[family]))
    chat = _chat(tmp_path)
    item = encode(processor, chat)
    model = load_model(str(folders[family]), dtype="fp32")
    batch = collate(processor, [chat, chat], [item, item], 512, model.config.image_token_id)
    assert batch["input_ids"].shape[1] == item.length
    trained = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]
    assert processor.tokenizer.decode(trained) == "a red circle<|im_end|>"
    assert (batch["input_ids"] == model.config.image_token_id).sum() > 0
    assert "pixel_values" in batch
    output = model(**{k: v for k, v in batch.items() if k != "labels"})
    assert torch.isfinite(output.logits).all()


def test_a_chat_whose_placeholders_and_images_disagree_is_an_error(folders: dict[str, Path], tmp_path: Path) -> None:
    chat = _chat(tmp_path)
    broken = Conversation(chat.messages, images=chat.images * 2)
    with pytest.raises(UserError, match="placeholders but 2 images"):
        encode(load_processor(str(folders["llava"])), broken)


def test_image_tokens_may_not_be_cut_by_max_seq_len(folders: dict[str, Path], tmp_path: Path) -> None:
    processor, chat = load_processor(str(folders["llava"])), _chat(tmp_path)
    item = encode(processor, chat)
    image_id = load_model(str(folders["llava"]), dtype="fp32").config.image_token_id
    with pytest.raises(UserError, match="image tokens reach past"):
        collate(processor, [chat], [item], 5, image_id)
    assert collate(processor, [chat], [item], item.length - 3, image_id)["input_ids"].shape[1] == item.length - 3


def _recipe(name: str, model: Path, data: Path, out: Path, **vision: bool) -> Recipe:
    return Recipe.model_validate({
        "name": name, "model": str(model), "method": "sft", "adapter": "lora", "output": str(out),
        "data": {"train": str(data), "eval": 0.25}, "adapter_args": {"r": 4, "alpha": 8},
        "train": {"max_steps": 3, "batch_size": 2, "max_seq_len": 128, "lr": 5e-3, "threads": 2},
        "vision": vision})


@pytest.mark.parametrize("family", PROCESSED)
def test_train_then_merge_a_tiny_vlm(folders: dict[str, Path], family: str, tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    from tunesmith.ship.merge import merge_run
    from tunesmith.train.loop import train

    data = tmp_path / "shapes.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in shape_rows(8, tmp_path / "images")))
    run = train(_recipe("vlm", folders[family], data, tmp_path / "runs", train_projector=True)).path
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    parts = vision_family(load_model(str(folders[family]), dtype="fp32").config)
    assert any(parts.projector.rpartition(".")[2] in k for k in saved) and any("lora_B" in k for k in saved)
    assert any(float(v.abs().max()) > 0 for k, v in saved.items() if "lora_B" in k)  # LoRA B starts at zero
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done"
    merged = merge_run(run)
    assert merged.max_abs_diff < 1e-4
    model = AutoModelForImageTextToText.from_pretrained(merged.out)
    processor = load_processor(str(merged.out))
    assert model.config.model_type == family and processor.image_processor is not None


@pytest.mark.parametrize("family", ["llava", "idefics3", "qwen2_vl"])
def test_qlora_quantizes_the_language_model_only(folders: dict[str, Path], family: str) -> None:
    pytest.importorskip("bitsandbytes")
    model = load_model(str(folders[family]), dtype="fp32", quantization="nf4")
    parts = vision_family(model.config)
    kinds = {name: type(module).__name__ for name, module in model.named_modules() if "Linear" in type(module).__name__}
    assert all(kind == "Linear4bit" for name, kind in kinds.items() if name.startswith(parts.language_model + "."))
    outside = [kind for name, kind in kinds.items() if not name.startswith(parts.language_model + ".")]
    assert outside and all(kind == "Linear" for kind in outside), kinds
    peft_model = apply_adapter(model, "qlora", AdapterArgs(r=4, alpha=8), VisionSpec(train_projector=True))
    assert any(f".{parts.projector}." in n and p.requires_grad for n, p in peft_model.named_parameters())


@pytest.mark.parametrize("family", PROCESSED)
def test_the_loss_is_transformers_own_and_the_speedups_keep_it(folders: dict[str, Path], family: str,
                                                             tmp_path: Path) -> None:
    from tunesmith.methods.language_modeling.objective import trained_nll_sum
    from tunesmith.train.speedups import apply_speedups

    processor, chat = load_processor(str(folders[family])), _chat(tmp_path)
    other = Conversation((Message("user", "Say hi <image> please"), Message("assistant", "hi there")), chat.images)
    items = [encode(processor, chat), encode(processor, other)]
    model = load_model(str(folders[family]), dtype="fp32")
    batch = collate(processor, [chat, other], items, 512, model.config.image_token_id)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        reference = model(**inputs, labels=batch["labels"]).loss
        ours = trained_nll_sum(model, inputs, batch["labels"]) / sum(item.trained for item in items)
        assert torch.allclose(ours, reference, atol=1e-5), (ours, reference)
        recipe = Recipe.model_validate({"name": "x", "model": str(folders[family]), "data": {"train": "t"}})
        peft_model = apply_adapter(model, "lora", AdapterArgs(r=4, alpha=8), VisionSpec(train_projector=True))
        apply_speedups(peft_model, recipe, torch.device("cpu"))  # LoRA's B starts at zero: the same function
        sped = trained_nll_sum(peft_model, inputs, batch["labels"]) / sum(item.trained for item in items)
    assert torch.allclose(sped, reference, atol=1e-5), (sped, reference)


def test_qwen2_vl_pictures_are_processed_without_torchvision(folders: dict[str, Path]) -> None:
    """Qwen2-VL's processor (pictures-only where torchvision is missing: vision/qwen2_vl.py) expands each
    picture into grid/merge² image tokens with transformers' own PIL image processor's pixels and grid, marks
    them in `mm_token_type_ids`, and its folder names transformers' class."""
    from PIL import Image
    from transformers import Qwen2VLImageProcessorPil

    processor = load_processor(str(folders["qwen2_vl"]))
    pictures = [Image.new("RGB", (16, 16), "red"), Image.new("RGB", (32, 16), "blue")]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = processor(text=[text, text], images=[[pictures[0]], [pictures[1]]], padding=True, return_tensors="pt")
    own = Qwen2VLImageProcessorPil.from_pretrained(folders["qwen2_vl"])(images=pictures, return_tensors="pt")
    assert torch.equal(batch["image_grid_thw"], own["image_grid_thw"])
    assert torch.equal(batch["pixel_values"], own["pixel_values"])
    image_id = load_model(str(folders["qwen2_vl"]), dtype="fp32").config.image_token_id
    per_row = (batch["input_ids"] == image_id).sum(dim=1)
    assert per_row.tolist() == (own["image_grid_thw"].prod(dim=1) // 4).tolist() and per_row[0] != per_row[1]
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == image_id)
    saved = json.loads((folders["qwen2_vl"] / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen2VLProcessor"


def test_a_processor_that_needs_torchvision_says_which_to_install(folders: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import importlib.util

    import tunesmith.vision.families as families

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: transformers builds Qwen2-VL's processor itself")
    qwen = families.BY_MODEL_TYPE["qwen2_vl"]
    monkeypatch.setitem(families.BY_MODEL_TYPE, "qwen2_vl", dataclasses.replace(qwen, without_torchvision=None))
    with pytest.raises(UserError, match=r"pip install the torchvision release built for your torch 2\.13"):
        load_processor(str(folders["qwen2_vl"]))
