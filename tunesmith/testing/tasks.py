"""Small verifiable tasks for trying GRPO and PPO: prompt rows with an `answer` a reward function can check.

    python -m tunesmith.testing.tasks names data/names.jsonl --rows 200

`names` ("Repeat the name: Sue" -> "Sue", scored by `starts_with`) suits a tiny story model: stories260k
already starts its answer with the right name about 8% of the time, often enough for a group of samples to
contain a success, so GRPO and PPO raise the reward within minutes on a CPU. `add` ("Add 3 and 4." -> "7",
scored by `numeric_match`) is the same idea for models that can count. Rows are drawn with a seeded RNG:
the same arguments always write the same file.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

NAMES = ("Max", "Anna", "Ben", "Tom", "Lily", "Sam", "Sue", "Tim", "Mia", "Jack", "Lucy", "Bob")
"""Character names from children's stories, the world a TinyStories model knows."""


def name_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """`{"prompt": "Repeat the name: Sue", "answer": "Sue"}` rows."""
    rng = random.Random(seed)
    return [{"prompt": f"Repeat the name: {name}", "answer": name} for name in (rng.choice(NAMES) for _ in range(count))]


def add_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """`{"prompt": "Add 3 and 4.", "answer": "7"}` rows, with one-digit numbers."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        rows.append({"prompt": f"Add {a} and {b}.", "answer": str(a + b)})
    return rows


TASKS: dict[str, Callable[[int, int], list[dict[str, str]]]] = {"names": name_rows, "add": add_rows}


def write_task(kind: str, out: str | Path, count: int = 200, seed: int = 0) -> Path:
    """Write `count` rows of task `kind` as JSON Lines to `out`; returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in TASKS[kind](count, seed)))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a small verifiable task for GRPO/PPO as JSON Lines.")
    parser.add_argument("kind", choices=sorted(TASKS))
    parser.add_argument("out", help="the .jsonl file to write")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_task(args.kind, args.out, args.rows, args.seed))


if __name__ == "__main__":
    main()
