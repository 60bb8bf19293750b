"""The data health report of an image dataset: images per row, sizes, image tokens (a processor's count, n/a for
a text tokenizer), and the example showing each picture where it sits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rich.console import Console

from tunesmith.data.image_stats import image_stats, image_token_counts
from tunesmith.data.prepared import PreparedData
from tunesmith.data.report import build_report, print_report, render_example, report_example
from tunesmith.data.templates import apply_template
from tunesmith.data.tokenize import tokenize_conversation
from tunesmith.data.types import Conversation, Message, Sample, Text
from tunesmith.testing.tiny import tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    tok = tiny_tokenizer()
    apply_template(tok, "chatml")
    return tok


@pytest.fixture(scope="module")
def processor() -> Any:
    """A real LLaVA processor over the tiny tokenizer: 28-pixel crops in 14-pixel patches, 4 tokens an image."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    return LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=14, num_additional_image_tokens=1,
                          vision_feature_select_strategy="default")


def _chat(text: str, *images: str) -> Conversation:
    return Conversation((Message("user", text), Message("assistant", "Red.")), tuple(images))


@pytest.fixture
def pictures(tmp_path: Path) -> dict[str, str]:
    made = {}
    for name, size in {"small": (8, 6), "mid": (32, 24), "big": (64, 48)}.items():
        path = tmp_path / f"{name}.png"
        Image.new("RGB", size, "red").save(path)
        made[name] = str(path)
    return made


def test_stats_per_row_sizes_and_tokens(pictures: dict[str, str], tokenizer: Any, processor: Any) -> None:
    examples = [_chat("<image>a", pictures["small"]), _chat("<image><image>b", pictures["big"], pictures["mid"]),
                _chat("no picture"), Text("raw")]
    stats = image_stats(examples, tokenizer)
    assert stats is not None
    assert (stats.rows, stats.rows_with_images, stats.per_row) == (3, 2, (0, 1, 2))
    assert stats.sizes == ((8, 6), (32, 24), (64, 48)) and stats.sized == 3 and stats.unreadable == 0
    assert stats.tokens_per_row is None  # a text tokenizer takes no images
    with_processor = image_stats(examples, processor)
    assert with_processor is not None and with_processor.tokens_per_row == (4, 8, 8)
    assert image_stats([_chat("text only"), Text("raw")], tokenizer) is None


def test_token_counts_come_from_the_processor(tokenizer: Any, processor: Any) -> None:
    assert image_token_counts(tokenizer, [(8, 6)]) is None
    assert image_token_counts(processor, [(8, 6), (640, 480)]) == [4, 4]


def _sample(tokenizer: Any, example: Conversation) -> Sample:
    return tokenize_conversation(tokenizer, example, 256, "all")


def test_example_marks_each_image_where_it_sits(pictures: dict[str, str], tokenizer: Any) -> None:
    example = _chat("<image> and <image>: which is red?", pictures["small"], pictures["big"])
    shown = render_example(_sample(tokenizer, example), tokenizer, example.images).plain
    assert "[image 1: 8x6 small.png] and [image 2: 64x48 big.png]: which is red?" in shown
    assert "<image>" not in shown
    plain = render_example(_sample(tokenizer, example), tokenizer).plain  # a text row keeps its literal text
    assert "<image> and <image>: which" in plain


def test_example_one_marker_per_expanded_run(pictures: dict[str, str], tokenizer: Any) -> None:
    """A processor writes one picture as several image tokens: each unbroken run is one picture."""
    example = _chat("<image><image><image><image>left, <image><image><image><image>right", pictures["mid"],
                    pictures["small"])
    shown = render_example(_sample(tokenizer, example), tokenizer, example.images).plain
    assert "[image 1: 32x24 mid.png]left, [image 2: 8x6 small.png]right" in shown


def test_report_prints_the_image_rows(pictures: dict[str, str], tokenizer: Any) -> None:
    examples = [_chat("<image>Colour?", pictures["mid"]), _chat("Plain?")]
    samples = [_sample(tokenizer, ex) for ex in examples]
    data = PreparedData(format="messages", detected=True, train=samples, eval=[], train_examples=examples,
                        eval_examples=[], rows=2, bad_rows=[], sources={})
    console = Console(record=True, width=200)
    example, images = report_example(data)
    assert example is samples[0] and images == (pictures["mid"],)
    print_report(build_report(data, tokenizer), example, tokenizer, console, images)
    out = console.export_text()
    assert "images per row min / median / max" in out and "0 / 1 / 1 (1 of 2 rows have images)" in out
    assert "32x24 / 32x24 / 32x24" in out
    assert "n/a (the tokenizer does not say; a text model)" in out
    assert "[image 1: 32x24 mid.png]Colour?" in out


def test_example_with_a_processors_own_image_token(pictures: dict[str, str]) -> None:
    """Qwen2-VL writes a picture as a run of `<|image_pad|>` between vision markers; the run is the picture."""
    tok = tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]})
    ids = tok("<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>Which colour?")["input_ids"]
    sample = Sample(ids, [-100] * len(ids))
    shown = render_example(sample, tok, (pictures["big"],), image_token="<|image_pad|>").plain
    assert "<|vision_start|>[image 1: 64x48 big.png]<|vision_end|>Which colour?" in shown
