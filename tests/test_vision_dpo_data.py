"""Preference rows with pictures -> `Preference.images`: TRL's vision DPO format (image parts in the prompt + an
`images` column) and our preference shapes with `<image>` + `images`; the same checks as image chats (file:line,
on_bad_row: skip), pictures kept with the prompt, and refused where no training path shows them."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tunesmith.data.example_codec import decode, encode
from tunesmith.data.formats import parse_rows
from tunesmith.data.images import IMAGE_PLACEHOLDER
from tunesmith.data.loading import load_rows
from tunesmith.data.pairs import PICTURES_REFUSAL, as_unpaired, tokenize_pairs
from tunesmith.data.types import Message, Preference, Unpaired
from tunesmith.errors import DataError, UserError


def _png(path: Path, color: str = "red") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _trl(image: str = "img/red.png") -> dict[str, Any]:
    """A row as TRL's vision DPO examples (RLAIF-V style) give it."""
    return {"images": [image],
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]}],
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "Red."}]}],
            "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}]}


def _parse(path: Path, on_bad_row: str = "error") -> Any:
    return parse_rows(load_rows(path, on_bad_row=on_bad_row), on_bad_row=on_bad_row)


def test_trl_vision_preference_rows_keep_their_pictures_with_the_prompt(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "red.png")
    parsed = _parse(_jsonl(tmp_path / "train.jsonl", [_trl()]))
    assert parsed.format == "preference"
    pair = parsed.examples[0]
    assert pair == Preference((Message("user", f"{IMAGE_PLACEHOLDER}Colour?"),), (Message("assistant", "Red."),),
                              (Message("assistant", "Blue."),), (str(tmp_path / "img" / "red.png"),))
    assert parsed.pictures == [str(tmp_path / "img" / "red.png")]
    assert decode(encode(pair)) == pair  # the prepared-data store keeps them


def test_our_preference_shapes_take_an_images_list(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", "blue")
    rows = [{"prompt": "<image>Which is red?<image>", "chosen": "The first.", "rejected": "The second.",
             "images": ["a.png", "b.png"]},
            {"conversations": [{"from": "human", "value": "<image>Colour?"}], "chosen": "Red.", "rejected": "Blue.",
             "images": ["a.png"]}]
    first, second = _parse(_jsonl(tmp_path / "train.jsonl", rows)).examples
    assert first.images == (str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    assert second.prompt == (Message("user", "<image>Colour?"),) and second.images == (str(tmp_path / "a.png"),)


def test_a_broken_picture_names_its_row_and_skip_leaves_it_out(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "red.png")
    (tmp_path / "img" / "bad.png").write_bytes(b"not a png")
    path = _jsonl(tmp_path / "train.jsonl", [_trl(), _trl("img/missing.png"), _trl("img/bad.png")])
    with pytest.raises(DataError, match=r"train.jsonl:2: image 1: image file not found.*1 more bad row"):
        _parse(path)
    parsed = _parse(path, on_bad_row="skip")
    assert len(parsed.examples) == 1 and len(parsed.bad_rows) == 2
    assert "train.jsonl:3: image 1" in parsed.bad_rows[1] and "not a readable image" in parsed.bad_rows[1]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Colour?", "chosen": "<image>Red.", "rejected": "Blue.", "images": ["red.png"]},
     "1 image placeholder\\(s\\) in 'chosen' or 'rejected'; a pair's pictures belong to its prompt"),
    ({"prompt": "<image>Colour?", "chosen": "Red.", "rejected": "Blue.", "images": ["red.png", "red.png"]},
     "1 image placeholder\\(s\\) .* but 2 image\\(s\\)"),
    ({"prompt": "<image>Colour?", "chosen": "Red.", "rejected": "Blue.", "images": ["https://x.org/red.png"]},
     "image 1: .*remote"),
])
def test_pairs_whose_pictures_do_not_fit_are_bad_rows(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    _png(tmp_path / "red.png")
    with pytest.raises(DataError, match="train.jsonl:1: " + message):
        _parse(_jsonl(tmp_path / "train.jsonl", [row]))


def test_a_pair_with_pictures_is_refused_where_it_would_train_as_text() -> None:
    """ORPO, the reward model and a text model's DPO tokenize pairs as text, KTO splits them into answers that
    carry no pictures: the pictures would be lost."""
    pair = Preference((Message("user", "<image>Colour?"),), (Message("assistant", "Red."),),
                      (Message("assistant", "Blue."),), ("red.png",))
    with pytest.raises(UserError, match="method: dpo .* on a vision-language model only"):
        tokenize_pairs([pair], tokenizer=None, max_len=64)
    with pytest.raises(UserError, match="orpo, kto, reward and a text model's dpo cannot see them"):
        as_unpaired([pair])
    assert as_unpaired([replace(pair, images=())])[0] == Unpaired(pair.prompt, pair.chosen, True)
    assert PICTURES_REFUSAL.startswith("preference rows with images")
