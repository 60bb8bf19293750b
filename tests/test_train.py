"""The shared training loop, end to end on tiny models: run folder, weights, accumulation, resume, guards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tunesmith.recipe.spec import Recipe, recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train import loop
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.loop import TrainingDiverged, build_trainer, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny random Llama folder and 240 alpaca rows it can learn from."""
    root = tmp_path_factory.mktemp("tiny")
    rows = make_rows(240, BASE_SKILLS, seed=3)
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [f"{r['instruction']}\n{r['output']}" for r in rows[:100]] + ["User: Assistant: "]
    model = save_tiny("llama", root / "base", vocab_size=300, texts=texts)
    return model, data


def make_recipe(tiny_setup: tuple[Path, Path], out: Path, **train: object) -> Recipe:
    model, data = tiny_setup
    adapter = str(train.pop("adapter", "lora"))
    dropout = float(train.pop("dropout", 0.0))
    return recipe_from_dict({
        "name": "t", "model": str(model), "adapter": adapter, "output": str(out),
        "data": {"train": str(data), "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 4, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no",
                  "max_grad_norm": 1e9, "seed": 0, **train},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": 4, "alpha": 8, "dropout": dropout},
    })


def adapter_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "adapter" / "adapter_model.safetensors")


def test_cli_train_writes_a_self_describing_run_folder(tiny_setup, tmp_path: Path) -> None:
    model, data = tiny_setup
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "cli", "model": str(model), "output": str(tmp_path / "runs"),
        "data": {"train": str(data), "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-3, "max_steps": 6, "batch_size": 4, "max_seq_len": 64, "eval_every": 3,
                  "save_every": 2, "keep_checkpoints": 2, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"},
    }))
    result = subprocess.run(
        [sys.executable, "-m", "tunesmith", "train", str(recipe), "train.lr=2e-3"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "cli"
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["recipe"]["train"]["lr"] == 2e-3
    assert info["base_model"] == str(model.resolve())
    assert set(info["versions"]) >= {"tunesmith", "torch", "transformers", "peft"}
    assert all(len(h) == 64 for h in info["data"]["sources"].values())
    assert info["final"]["eval_loss"] is not None and info["ended"]
    records = read_metrics(run / "metrics.jsonl")
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert all({"lr", "tokens", "tokens_per_s"} <= set(r) for r in steps)
    assert [r["step"] for r in records if "eval_loss" in r] == [0, 3, 6]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert (run / "loss.png").stat().st_size > 10_000
    base = AutoModelForCausalLM.from_pretrained(model)
    tuned = PeftModel.from_pretrained(base, run / "adapter")
    assert tuned.peft_config["default"].r == 16
    assert (run / "adapter" / "tokenizer_config.json").is_file()
    assert "held-out loss" in result.stderr


def test_lora_changes_only_adapter_weights_and_lowers_eval_loss(tiny_setup, tmp_path: Path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=30, lr=1e-2)
    trainer = build_trainer(recipe)
    model = trainer.accelerator.unwrap_model(trainer.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loop.trainer_run(trainer)
    after = dict(model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)
    final = json.loads((tmp_path / "t" / "run.json").read_text())["final"]
    assert final["eval_loss"] < final["eval_loss_before"] - 0.1


def test_full_fine_tuning_writes_a_plain_hf_model(tiny_setup, tmp_path: Path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, adapter="full", lr=1e-3)
    run = train(recipe).path
    reloaded = AutoModelForCausalLM.from_pretrained(run / "model")
    original = AutoModelForCausalLM.from_pretrained(tiny_setup[0])
    changed = [n for n, p in reloaded.named_parameters() if not torch.equal(p, original.get_parameter(n))]
    assert len(changed) == len(list(reloaded.parameters()))


def test_losses_are_pinned_for_a_fixed_seed(tiny_setup, tmp_path: Path) -> None:
    run = train(make_recipe(tiny_setup, tmp_path, max_steps=3)).path
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert losses == pytest.approx(PINNED_LOSSES, rel=1e-4)


PINNED_LOSSES = [5.6835962110950105, 5.676983303493923, 5.545770874023438]


def test_gradient_accumulation_matches_one_big_batch(tiny_setup, tmp_path: Path) -> None:
    """1 x 8 and 4 x 2 micro-batches hold the same rows per step, so gradients and updates must agree."""
    big = train(make_recipe(tiny_setup, tmp_path / "big", batch_size=8, grad_accum=1, max_steps=3)).path
    small = train(make_recipe(tiny_setup, tmp_path / "small", batch_size=2, grad_accum=4, max_steps=3)).path
    norms = [[r["grad_norm"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r] for run in (big, small)]
    assert norms[0] == pytest.approx(norms[1], rel=1e-5)
    a, b = adapter_weights(big), adapter_weights(small)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_resume_continues_exactly(tiny_setup, tmp_path: Path) -> None:
    """Train 2N steps straight == train N, stop, resume for N more (LoRA dropout on: RNG must be restored)."""
    straight = train(make_recipe(tiny_setup, tmp_path / "a", max_steps=6, dropout=0.1)).path
    recipe = make_recipe(tiny_setup, tmp_path / "b", max_steps=6, dropout=0.1, save_every=3)
    trainer = build_trainer(recipe)
    for step in range(3):
        loop._train_step(trainer, step)
        loop._after_step(trainer, step + 1)
    del trainer
    assert latest_checkpoint(tmp_path / "b" / "t").name == "step-3"
    resumed = train(recipe, resume=True).path
    a, b = adapter_weights(straight), adapter_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in read_metrics(resumed / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_setup, tmp_path: Path, monkeypatch) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=6, save_every=2)
    trainer = build_trainer(recipe)
    real_loss = trainer.objective.loss_sum
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        loss, metrics = real_loss(model, batch)
        return (loss * float("nan"), metrics) if calls["n"] > 3 else (loss, metrics)

    monkeypatch.setattr(trainer.objective, "loss_sum", poisoned)
    snapshot = latest = None
    with pytest.raises(TrainingDiverged, match="step 4.*step-2"):
        for step in range(6):
            loop._train_step(trainer, step)
            loop._after_step(trainer, step + 1)
            if step == 1:
                latest = latest_checkpoint(trainer.folder.path)
                snapshot = (latest / "trainable.safetensors").read_bytes()
    assert latest_checkpoint(trainer.folder.path) == latest
    assert (latest / "trainable.safetensors").read_bytes() == snapshot
    assert json.loads((trainer.folder.path / "run.json").read_text())["status"] == "diverged"


def test_interrupt_saves_a_checkpoint_that_resumes(tiny_setup, tmp_path: Path, monkeypatch) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=5)
    real_step = loop._train_step

    def interrupt_at_third(trainer, step):
        if step == 2:
            raise KeyboardInterrupt
        return real_step(trainer, step)

    monkeypatch.setattr(loop, "_train_step", interrupt_at_third)
    with pytest.raises(SystemExit) as stop:
        train(recipe)
    assert stop.value.code == 130
    assert latest_checkpoint(tmp_path / "t").name == "step-2"
    monkeypatch.setattr(loop, "_train_step", real_step)
    run = train(recipe, resume=True).path
    assert json.loads((run / "run.json").read_text())["status"] == "done"


def test_existing_run_folder_is_not_overwritten_silently(tiny_setup, tmp_path: Path) -> None:
    recipe = make_recipe(tiny_setup, tmp_path, max_steps=1)
    train(recipe)
    with pytest.raises(Exception, match="finished run.*--overwrite"):
        train(recipe)
    train(recipe, overwrite=True)


def test_replay_mixes_general_tokens_at_the_asked_share(tiny_setup, tmp_path: Path) -> None:
    general = tmp_path / "general.txt"
    general.write_text("\n".join(f"story number {i} about a cat and a dog in the sun" for i in range(200)))
    model, data = tiny_setup
    recipe = recipe_from_dict({
        "name": "replay", "model": str(model), "adapter": "full", "output": str(tmp_path),
        "data": {"train": str(data), "eval": 0.1, "template": "plain", "replay": {"train": str(general), "ratio": 0.25}},
        "train": {"max_steps": 2, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"},
    })
    run = train(recipe).path
    replay = json.loads((run / "run.json").read_text())["data"]["replay"]
    assert replay["share"] == pytest.approx(0.25, abs=0.01) and replay["replay_samples"] > 0


def test_profile_reports_where_step_time_goes(tiny_setup, tmp_path: Path, capsys) -> None:
    train(make_recipe(tiny_setup, tmp_path, max_steps=2), profile=True)
    err = capsys.readouterr().err
    assert "where step time went" in err
    assert all(phase in err for phase in ("data", "forward", "backward", "optimizer"))


def test_shuffle_off_keeps_the_file_order(tiny_setup, tmp_path: Path) -> None:
    """`train.shuffle: false` trains the samples in file order, both epochs; on (the default) it does not."""
    kept = build_trainer(make_recipe(tiny_setup, tmp_path / "kept", packing=False, shuffle=False, max_steps=None, epochs=2))
    train_ids = [s.input_ids for s in kept.data.train]
    planned = [s.input_ids for rows in kept.objective.plan.micro_batches for s in rows]
    usable = len(planned)
    assert planned == (train_ids * 2)[:usable]
    shuffled = build_trainer(make_recipe(tiny_setup, tmp_path / "shuffled", packing=False, max_steps=None, epochs=2))
    assert [s.input_ids for rows in shuffled.objective.plan.micro_batches for s in rows] != planned


def test_threads_sets_torch_cpu_threads(tiny_setup, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # so that 1 below is a change, whatever the machine's default
    try:
        build_trainer(make_recipe(tiny_setup, tmp_path, threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
