"""`data.streaming: true`: shards read in place (fsspec's memory filesystem stands in for an object store),
a stream that rebuilds from any saved position, and a resumed streamed run that trains bit for bit as an
uninterrupted one."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from tunesmith.data.shards import expand_shards, read_rows
from tunesmith.data.stream import Position, StreamSource
from tunesmith.data.templates import apply_template
from tunesmith.errors import DataError, UserError
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train import loop
from tunesmith.train.checkpoint import latest_checkpoint
from tunesmith.train.loop import build_trainer, train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("stream")
    rows = make_rows(240, BASE_SKILLS, seed=3)
    texts = [f"{r['instruction']}\n{r['output']}" for r in rows[:100]] + ["User: Assistant: "]
    return save_tiny("llama", root / "base", vocab_size=300, texts=texts), rows


def memory_shards(rows: list[dict], shards: int = 3) -> str:
    """`rows` as JSON Lines shards in a fresh folder of fsspec's in-memory filesystem; its URL."""
    url = f"memory://corpus-{uuid.uuid4().hex}"
    per = -(-len(rows) // shards)
    for k in range(shards):
        with fsspec.open(f"{url}/part-{k:02d}.jsonl", "w") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in rows[k * per:(k + 1) * per]))
    return url + "/"


def streamed_recipe(model: Path, source: str, out: Path, **train: object) -> object:
    return recipe_from_dict({
        "name": "s", "model": str(model), "output": str(out),
        "data": {"train": source, "template": "plain", "streaming": True, "shuffle_buffer": 25},
        "train": {"lr": 1e-2, "max_steps": 6, "batch_size": 2, "max_seq_len": 64, "mixed_precision": "no",
                  "max_grad_norm": 1e9, "seed": 0, **train},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.1},
    })


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


def test_a_resumed_streamed_run_trains_bit_for_bit_like_an_uninterrupted_one(tiny, tmp_path: Path) -> None:
    model, rows = tiny
    source = memory_shards(rows)
    straight = train(streamed_recipe(model, source, tmp_path / "a")).path
    recipe = streamed_recipe(model, source, tmp_path / "b", save_every=4)
    trainer = build_trainer(recipe)
    for step in range(4):  # then the process is gone: only the checkpoint of step 4 remains
        loop._train_step(trainer, step)
        loop._after_step(trainer, step + 1)
    del trainer
    saved = json.loads((latest_checkpoint(tmp_path / "b" / "s") / "trainer_state.json").read_text())
    assert saved["step"] == 4 and saved["data_position"]["used"] > 0  # mid-window: the seek skips used items
    resumed = train(recipe, resume=True).path
    assert losses(resumed) == losses(straight) and len(losses(straight)) == 6
    a, b = (load_file(run / "adapter" / "adapter_model.safetensors") for run in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((straight / "run.json").read_text())
    assert record["data"]["streamed_shards"] == 3 and all(k.startswith("memory://") for k in record["data"]["sources"])


def test_the_stream_rebuilds_from_every_position_across_windows_shards_and_epochs(tiny, tmp_path: Path) -> None:
    """Text in three kinds of shard (txt, JSON Lines, parquet); the stream from any saved position is the rest
    of the stream from the start, so a resume at any step sees the same items."""
    model, _ = tiny
    lines = [f"story {i}: " + "the cat sat on the mat " * (1 + i % 5) for i in range(60)]
    (tmp_path / "a.txt").write_text("\n".join(lines[:20]) + "\n")
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines[20:40]))
    pq.write_table(pa.table({"text": lines[40:]}), tmp_path / "c.parquet")
    source = StreamSource(expand_shards(str(tmp_path)), "text", load_tokenizer(str(model)), 32, "all", window=7,
                          seed=1, shuffle=True, packing=True)
    stream = list(itertools.islice(source.items(), 400))
    first_of_epoch_1 = next(k for k, (_, p) in enumerate(stream) if p.epoch == 1)
    stream = stream[:first_of_epoch_1 + 10]  # one epoch and the start of the next
    assert len({(p.epoch, p.shard) for _, p in stream}) == 4
    for k in [*range(0, len(stream) - 1, 3), first_of_epoch_1 - 1]:
        again = [item for item, _ in itertools.islice(source.items(Position.from_json(stream[k][1].to_json())), 1)]
        assert again == [stream[k + 1][0]], k
    unshuffled = StreamSource(source.shards, "text", source.tokenizer, 32, "all", 7, 1, shuffle=False, packing=True)
    assert [item for item, _ in itertools.islice(unshuffled.items(), len(stream))] != [item for item, _ in stream]


def test_a_glob_and_a_folder_of_shards_are_read_in_name_order(tmp_path: Path) -> None:
    for name in ("part-2.jsonl", "part-1.jsonl", "notes.md", "other.jsonl"):
        (tmp_path / name).write_text(json.dumps({"text": name}) + "\n")
    assert [Path(s.name).name for s in expand_shards(str(tmp_path / "part-*.jsonl"))] == ["part-1.jsonl", "part-2.jsonl"]
    assert [Path(s.name).name for s in expand_shards(str(tmp_path))] == ["other.jsonl", "part-1.jsonl", "part-2.jsonl"]
    with pytest.raises(UserError, match="not found"):
        expand_shards(str(tmp_path / "missing"))
    with pytest.raises(UserError, match=r"hf://datasets/someone/corpus/"):
        expand_shards("someone/corpus")


def test_a_bad_line_deep_in_a_shard_names_the_shard_and_line(tiny, tmp_path: Path) -> None:
    model, rows = tiny
    url = f"memory://bad-{uuid.uuid4().hex}"
    body = "".join(json.dumps(r) + "\n" for r in rows[:60])
    with fsspec.open(f"{url}/part-00.jsonl", "w") as handle:
        handle.write(body + '{"instruction": "cut off\n')
    tokenizer = load_tokenizer(str(model))
    apply_template(tokenizer, "plain")
    source = StreamSource(expand_shards(url), "alpaca", tokenizer, 64, "all", window=25, seed=0,
                          shuffle=False, packing=True)
    with pytest.raises(DataError, match=r"memory://.*bad-.*/part-00.jsonl:61: invalid JSON"):
        list(itertools.islice(source.items(), 1000))
    skipping = StreamSource(source.shards, "alpaca", source.tokenizer, 64, "all", 25, 0, False, True, skip_bad=True)
    assert len(list(itertools.islice(skipping.items(), 200))) == 200  # skipped, and the stream cycles on


def test_rows_resume_from_a_byte_offset(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n\n" for i in range(10)))
    shard = expand_shards(str(tmp_path / "d.jsonl"))[0]
    everything = list(read_rows(shard))
    assert everything[3][0].where.endswith("d.jsonl:7")
    assert [row.data for row, _ in read_rows(shard, everything[3][1])] == [row.data for row, _ in everything[4:]]


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {"max_steps": None}}, "needs train.max_steps"),
    ({"method": "dpo"}, "trains on whole examples"),
    ({"data": {"eval": 0.2}}, "cannot hold out a fraction"),
])
def test_what_a_stream_cannot_do_is_a_recipe_error(tiny, change: dict, message: str) -> None:
    model, _ = tiny
    raw = {"name": "s", "model": str(model), "data": {"train": "memory://x/", "streaming": True},
           "train": {"max_steps": 3}}
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    with pytest.raises(UserError, match=message):
        recipe_from_dict(raw)


def test_a_url_and_a_glob_also_load_whole_without_streaming(tiny) -> None:
    from tunesmith.data.loading import load_rows

    _, rows = tiny
    url = memory_shards(rows[:30])
    assert [r.data for r in load_rows(url + "part-*.jsonl")] == rows[:30] == [r.data for r in load_rows(url)]


def test_validate_reports_on_the_first_window_of_a_stream(tiny, tmp_path: Path) -> None:
    from tunesmith.data.pipeline import prepare_data

    model, rows = tiny
    recipe = streamed_recipe(model, memory_shards(rows), tmp_path)
    data = prepare_data(recipe, load_tokenizer(str(model)))
    assert data.stream is not None and data.rows == 25 and len(data.train_examples) == 25 and len(data.train) == 25
    assert data.summary()["streamed_shards"] == 3


def test_a_stream_reads_one_window_ahead_of_training_not_the_corpus(tiny, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.data import stream

    model, _ = tiny
    (tmp_path / "big.txt").write_text("".join(f"line {i} of a corpus\n" for i in range(20_000)))
    read = []
    real = stream.read_rows

    def counted(*args, **kwargs):
        for row in real(*args, **kwargs):
            read.append(1)
            yield row

    monkeypatch.setattr(stream, "read_rows", counted)
    source = StreamSource(expand_shards(str(tmp_path / "big.txt")), "text", load_tokenizer(str(model)), 32, "all",
                          window=50, seed=0, shuffle=True, packing=True)
    items = source.items()
    next(items)
    assert len(read) == 50
    for _ in range(200):
        next(items)
    assert len(read) < 1000
