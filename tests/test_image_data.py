"""Image chats in the three shapes users have (LLaMA-Factory, OpenAI image_url, TRL) -> `Conversation.images`;
a broken row (missing, corrupt, remote image, placeholder mismatch) names its file:line and the image, and
`on_bad_row: skip` leaves it out and counts it."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tunesmith.data.formats import parse_rows
from tunesmith.data.images import IMAGE_PLACEHOLDER
from tunesmith.data.loading import load_rows
from tunesmith.data.types import Conversation, Message
from tunesmith.errors import DataError


def _png(path: Path, size: tuple[int, int] = (8, 6), color: str = "red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _data_uri(size: tuple[int, int] = (4, 4)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _llamafactory(image: str = "img/red.png", text: str = "<image>What colour?") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Red."}],
            "images": [image]}


def _openai(url: str) -> dict[str, Any]:
    parts = [{"type": "text", "text": "Colour? "}, {"type": "image_url", "image_url": {"url": url}}]
    return {"messages": [{"role": "user", "content": parts}, {"role": "assistant", "content": "Red."}]}


def _trl(images: list[str]) -> dict[str, Any]:
    parts = [{"type": "image"}, {"type": "text", "text": "Colour?"}]
    return {"messages": [{"role": "user", "content": parts},
                         {"role": "assistant", "content": [{"type": "text", "text": "Red."}]}], "images": images}


def _parse(path: Path, on_bad_row: str = "error") -> Any:
    return parse_rows(load_rows(path, on_bad_row=on_bad_row), on_bad_row=on_bad_row)


def test_llamafactory_sharegpt_and_messages(tmp_path: Path) -> None:
    red = _png(tmp_path / "data" / "img" / "red.png")
    sharegpt = {"conversations": [{"from": "human", "value": "<image>What colour?"}, {"from": "gpt", "value": "Red."}],
                "images": ["img/red.png"]}
    for row, fmt in ((sharegpt, "sharegpt"), (_llamafactory(), "messages")):
        parsed = _parse(_jsonl(tmp_path / "data" / f"{fmt}.jsonl", [row]))
        assert parsed.format == fmt
        assert parsed.examples == [Conversation((Message("user", "<image>What colour?"), Message("assistant", "Red.")),
                                                (str(red),))]


def test_relative_paths_follow_the_data_file_not_the_working_directory(tmp_path: Path, monkeypatch: Any) -> None:
    red = _png(tmp_path / "data" / "img" / "red.png")
    path = _jsonl(tmp_path / "data" / "train.jsonl", [_llamafactory()])
    monkeypatch.chdir(tmp_path)  # img/red.png does not exist here: only the data file's folder has it
    assert _parse(Path("data/train.jsonl")).examples[0].images == (str(red),)
    assert _parse(path).examples[0].images == (str(red),)


def test_openai_image_url_parts_file_and_data_uri(tmp_path: Path) -> None:
    red = _png(tmp_path / "red.png")
    uri = _data_uri()
    parsed = _parse(_jsonl(tmp_path / "train.jsonl", [_openai("red.png"), _openai(f"file://{red}"), _openai(uri)]))
    assert parsed.format == "messages"
    assert [ex.images for ex in parsed.examples] == [(str(red),), (str(red),), (uri,)]
    assert parsed.examples[0].messages[0] == Message("user", f"Colour? {IMAGE_PLACEHOLDER}")


def test_trl_image_parts_with_images_column(tmp_path: Path) -> None:
    red, blue = _png(tmp_path / "red.png"), _png(tmp_path / "blue.png", color="blue")
    row = _trl(["red.png", "blue.png"])
    row["messages"][0]["content"].insert(1, {"type": "image"})
    example = _parse(_jsonl(tmp_path / "train.jsonl", [row])).examples[0]
    assert example.images == (str(red), str(blue))
    assert example.messages[0].content == "<image><image>Colour?"
    assert example.messages[1] == Message("assistant", "Red.")


def test_trl_parquet_with_image_bytes(tmp_path: Path) -> None:
    """TRL datasets saved by `datasets` keep each picture as `{"bytes", "path"}` in parquet: it becomes a data: URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    Image.new("RGB", (5, 3), "red").save(buffer, format="PNG")
    good = _trl([]) | {"images": [{"bytes": buffer.getvalue(), "path": None}]}
    broken = _trl([]) | {"images": [{"bytes": b"not a picture", "path": None}]}
    pq.write_table(pa.Table.from_pylist([good, broken]), tmp_path / "train.parquet")
    parsed = _parse(tmp_path / "train.parquet", on_bad_row="skip")
    assert parsed.examples[0].images == ("data:image;base64," + base64.b64encode(buffer.getvalue()).decode(),)
    assert parsed.bad_rows == [f"{tmp_path / 'train.parquet'}:row 2: image 1: not a readable image: inline data: URI "
                               "of 38 characters (no image format Pillow reads)"]


def test_text_rows_next_to_image_rows(tmp_path: Path) -> None:
    """A text dataset keeps a literal `<image>`; in a dataset with pictures it is a placeholder that needs one."""
    _png(tmp_path / "img" / "red.png")
    text = {"messages": [{"role": "user", "content": "Write <image> in HTML"}, {"role": "assistant", "content": "<img>"}]}
    plain = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    alone = _parse(_jsonl(tmp_path / "text.jsonl", [text]))
    assert alone.examples == [Conversation((Message("user", "Write <image> in HTML"), Message("assistant", "<img>")))]
    mixed = _parse(_jsonl(tmp_path / "train.jsonl", [plain, _llamafactory(), text]), on_bad_row="skip")
    assert [len(ex.images) for ex in mixed.examples] == [0, 1]
    assert mixed.bad_rows == [f"{tmp_path / 'train.jsonl'}:3: 1 image placeholder(s) (<image>) but no images, in a "
                              "dataset whose other rows have pictures; add the row's 'images'"]


def _shape(shape: str, ref: str, extra: int = 0) -> dict[str, Any]:
    """A one-picture row in each shape users have; `extra` more placeholders than pictures."""
    if shape == "llamafactory sharegpt":
        return {"conversations": [{"from": "human", "value": "<image>" * (1 + extra) + "Colour?"},
                                  {"from": "gpt", "value": "Red."}], "images": [ref]}
    if shape == "llamafactory messages":
        return _llamafactory(ref, "<image>" * (1 + extra) + "Colour?")
    if shape == "openai":
        row = _openai(ref)
        row["messages"][0]["content"][0]["text"] += "<image>" * extra  # a literal placeholder pairs with no picture
        return row
    row = _trl([ref])
    row["messages"][0]["content"][:0] = [{"type": "image"}] * extra
    return row


SHAPES = ("llamafactory sharegpt", "llamafactory messages", "openai", "trl")
BREAKS: dict[str, tuple[str, int, str]] = {  # the picture, extra placeholders, what the error says
    "missing": ("img/nowhere.png", 0, "image 1: image file not found: "),
    "corrupt": ("img/corrupt.png", 0, "image 1: not a readable image: "),
    "truncated": ("img/truncated.png", 0, "image 1: not a readable image: "),
    "mismatch": ("img/red.png", 1, "2 image placeholder(s) (<image> or image parts) but 1 image(s)"),
    "http": ("https://example.com/cat.png", 0, "image 1: remote image 'https://example.com/cat.png' refused"),
    "corrupt data uri": ("data:image/png;base64,iVBORw0KGgo=", 0, "image 1: not a readable image"),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", sorted(BREAKS))
def test_broken_image_row_names_file_line_and_image(tmp_path: Path, shape: str, case: str) -> None:
    good = _png(tmp_path / "img" / "red.png", size=(64, 64))
    (tmp_path / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "img" / "truncated.png").write_bytes(good.read_bytes()[:80])
    ref, extra, expected = BREAKS[case]
    path = _jsonl(tmp_path / "train.jsonl", [_shape(shape, "img/red.png"), _shape(shape, ref, extra)])
    with pytest.raises(DataError) as info:
        _parse(path)
    assert f"{path}:2: {expected}" in str(info.value)
    parsed = _parse(path, on_bad_row="skip")
    assert len(parsed.examples) == 1 and parsed.examples[0].images == (str(good),)
    assert len(parsed.bad_rows) == 1 and parsed.bad_rows[0].startswith(f"{path}:2: {expected}")


@pytest.mark.parametrize("row, expected", [
    (_trl([]), "1 image placeholder(s) (<image> or image parts) but 0 image(s)"),
    (_openai(""), "'messages' turn 1: an image_url part needs"),
    (_llamafactory() | {"images": "img/red.png"}, "field 'images' should be a list of image paths, got text"),
])
def test_malformed_picture_fields(tmp_path: Path, row: dict[str, Any], expected: str) -> None:
    with pytest.raises(DataError) as info:
        _parse(_jsonl(tmp_path / "train.jsonl", [row]))
    assert f"train.jsonl:1: {expected}" in str(info.value)


def test_trl_prompt_completion(tmp_path: Path) -> None:
    red = _png(tmp_path / "red.png")
    row = {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}],
           "completion": [{"role": "assistant", "content": [{"type": "text", "text": "Red."}]}], "images": ["red.png"]}
    parsed = _parse(_jsonl(tmp_path / "train.jsonl", [row]))
    assert parsed.format == "prompt_completion"
    assert parsed.examples == [Conversation((Message("user", "<image>Colour?"), Message("assistant", "Red.")), (str(red),))]


def test_images_column_and_image_url_parts_together_are_refused(tmp_path: Path) -> None:
    _png(tmp_path / "red.png")
    row = _openai("red.png") | {"images": ["red.png"]}
    with pytest.raises(DataError, match=r"train.jsonl:1: the row gives images both as image_url parts"):
        _parse(_jsonl(tmp_path / "train.jsonl", [row, _openai("red.png")]))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_bomb_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    _png(tmp_path / "img" / "red.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40x40 = 1600 pixels declared by a small file
    with pytest.raises(DataError, match=r"train.jsonl:1: image 1: image .* is 40x40 pixels, over the bound"):
        _parse(_jsonl(tmp_path / "train.jsonl", [_llamafactory()]))


def test_prepared_store_is_a_miss_once_a_picture_changes(tmp_path: Path) -> None:
    """Pictures are not hashed with the data files, so the store checks their size and time on every read."""
    import os

    from tunesmith.data.pipeline import prepare_data
    from tunesmith.recipe.spec import recipe_from_dict
    from tunesmith.testing.tiny import tiny_tokenizer

    red = _png(tmp_path / "img" / "red.png")
    path = _jsonl(tmp_path / "train.jsonl", [_llamafactory(), _openai(_data_uri())])
    recipe = recipe_from_dict({"name": "pictures", "model": "unused", "method": "sft",
                               "data": {"train": str(path), "eval": 0.0, "template": "chatml"},
                               "train": {"max_seq_len": 128}})
    tokenizer = tiny_tokenizer()
    first = prepare_data(recipe, tokenizer)
    assert not first.from_cache and [ex.images for ex in first.train_examples][0] == (str(red),)
    assert prepare_data(recipe, tokenizer).from_cache
    _png(red, size=(9, 9))  # replaced by another picture
    os.utime(red, ns=(1, 1))
    assert not prepare_data(recipe, tokenizer).from_cache
    assert prepare_data(recipe, tokenizer).from_cache
    red.unlink()
    with pytest.raises(DataError, match=r"train.jsonl:1: image 1: image file not found"):
        prepare_data(recipe, tokenizer)


def test_pictures_outside_chats(tmp_path: Path) -> None:
    """A KTO answer's pictures cannot be dropped silently; a prompt row's columns go to rewards as before
    (preference pairs keep theirs: tests/test_vision_dpo_data.py)."""
    judged = {"prompt": "<image>Colour?", "completion": "Red.", "label": True, "images": ["red.png"]}
    with pytest.raises(DataError, match=r"train.jsonl:1: images are read for chat rows \(method: sft\) and "
                                        r"preference pairs \(method: dpo\), not for KTO"):
        _parse(_jsonl(tmp_path / "train.jsonl", [judged]))
    prompt = {"prompt": "Colour?", "images": ["anything"]}
    parsed = parse_rows(load_rows(_jsonl(tmp_path / "prompts.jsonl", [prompt])), "prompt")
    assert parsed.examples[0].fields == {"images": ["anything"]}


def test_pictures_checked_over_workers_match_one_process(tmp_path: Path) -> None:
    """Decoding over forked workers (2 tasks of 64 pictures) finds the same bad rows, in row order, as one process."""
    rows = []
    for i in range(80):
        _png(tmp_path / "img" / f"{i}.png", size=(4 + i % 3, 4))
        rows.append(_llamafactory(f"img/{i}.png"))
    (tmp_path / "img" / "70.png").write_bytes(b"garbage")
    (tmp_path / "img" / "3.png").unlink()
    rows[40] = _llamafactory(text="no placeholder")
    path = _jsonl(tmp_path / "train.jsonl", rows)
    one = parse_rows(load_rows(path), on_bad_row="skip", workers=1)
    two = parse_rows(load_rows(path), on_bad_row="skip", workers=2)
    assert one == two and len(one.examples) == 77
    assert [message.split(": ")[0].rsplit(":", 1)[1] for message in two.bad_rows] == ["4", "41", "71"]
    assert "image 1: image file not found" in two.bad_rows[0] and "not a readable image" in two.bad_rows[2]


def test_prepared_store_sees_a_skipped_rows_picture_fixed(tmp_path: Path) -> None:
    from tunesmith.data.pipeline import prepare_data
    from tunesmith.recipe.spec import recipe_from_dict
    from tunesmith.testing.tiny import tiny_tokenizer

    _png(tmp_path / "img" / "red.png")
    path = _jsonl(tmp_path / "train.jsonl", [_llamafactory(), _llamafactory("img/later.png")])
    recipe = recipe_from_dict({"name": "pictures", "model": "unused", "method": "sft",
                               "data": {"train": str(path), "eval": 0.0, "template": "chatml", "on_bad_row": "skip"},
                               "train": {"max_seq_len": 128}})
    tokenizer = tiny_tokenizer()
    assert len(prepare_data(recipe, tokenizer).bad_rows) == 1
    assert prepare_data(recipe, tokenizer).from_cache
    _png(tmp_path / "img" / "later.png")  # the user adds the missing picture, the data file unchanged
    fixed = prepare_data(recipe, tokenizer)
    assert not fixed.from_cache and not fixed.bad_rows and len(fixed.train_examples) == 2
