"""`tunesmith demo`, the README's first command: it runs end to end, held-out loss falls, and it prints no
warning about its own recipe (the base-building step explains on screen why it uses pre-training settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.testing.demo import PRETRAINING_NOTE, run_demo


def test_demo_lowers_held_out_loss_without_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tuned = run_demo(tmp_path)
    shown = " ".join(capsys.readouterr().out.split())
    final = json.loads((tuned / "run.json").read_text())["final"]
    assert final["eval_loss"] < final["eval_loss_before"] - 0.5, final
    assert "warning" not in shown.lower(), shown
    assert "pre-training, not fine-tuning" in shown and "pre-training" in PRETRAINING_NOTE
    assert (tuned / "adapter" / "adapter_config.json").is_file()
