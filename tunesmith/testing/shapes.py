"""A picture task a VLM cannot answer without looking: coloured shapes drawn with Pillow.

"What is in the picture?" -> "a red circle", over 4 colours x 3 shapes (chance: 1 in 12). Each picture varies
in size, position and background shade, so a model has to read the image, not memorise one bitmap.

    python -c "from tunesmith.testing.shapes import write_shapes; write_shapes('data/shapes', 300, 100)"
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220),
                                            "yellow": (235, 210, 30)}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
QUESTION = "What is in the picture?"
SYSTEM = "Answer in a few words."
"""A short system turn: without one, a chat template may add its own long default (SmolLM2's), tokens on every row."""


def draw_shape(colour: str, shape: str, size: int = 64, rng: random.Random | None = None) -> Image.Image:
    """An RGB picture of one `colour` `shape` on a light grey background, placed and sized by `rng`."""
    rng = rng or random.Random(0)
    shade = rng.randint(200, 255)
    image = Image.new("RGB", (size, size), (shade, shade, shade))
    draw = ImageDraw.Draw(image)
    extent = rng.randint(size // 2, size - 8)
    x0, y0 = rng.randint(2, size - extent - 2), rng.randint(2, size - extent - 2)
    box = (x0, y0, x0 + extent, y0 + extent)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x0 + extent // 2, y0), (x0, y0 + extent), (x0 + extent, y0 + extent)], fill=fill)
    return image


def shape_rows(count: int, folder: str | Path, seed: int = 0, prefix: str = "img") -> list[dict[str, object]]:
    """`count` chat rows (OpenAI messages with an `images` column), their pictures written under `folder`;
    the 12 combinations take turns, so every split is balanced."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    rows = []
    for index in range(count):
        colour, shape = combos[index % len(combos)]
        path = out / f"{prefix}-{index:04d}.png"
        draw_shape(colour, shape, rng=rng).save(path)
        rows.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"<image>{QUESTION}"},
                                  {"role": "assistant", "content": f"a {colour} {shape}"}],
                     "images": [str(path.resolve())]})
    return rows


def write_shapes(folder: str | Path, train: int = 300, held_out: int = 100, seed: int = 0) -> tuple[Path, Path]:
    """train.jsonl and heldout.jsonl (different pictures, different seeds) with their images, under `folder`."""
    out = Path(folder)
    paths = []
    for name, count, offset in (("train", train, 0), ("heldout", held_out, 1)):
        rows = shape_rows(count, out / "images", seed * 2 + offset, prefix=name)
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        paths.append(path)
    return paths[0], paths[1]
