"""train.report_to: TensorBoard, MLflow and W&B (offline) get the same records as metrics.jsonl, read back
from what each wrote, plus the resolved recipe as their configuration."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest
import yaml

from tunesmith.errors import UserError
from tunesmith.recipe.spec import Recipe, recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny
from tunesmith.train import trackers
from tunesmith.train.loop import train
from tunesmith.train.trackers import flatten

INSTALLED = [name for name in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(name) is not None]


def _recipe(root: Path, report_to: list[str]) -> Recipe:
    rows = make_rows(80, BASE_SKILLS, seed=1)
    data = root / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    texts = [f"{r['instruction']}\n{r['output']}" for r in rows[:40]]
    model = save_tiny("llama", root / "base", vocab_size=300, texts=texts)
    return recipe_from_dict({
        "name": "tracked", "model": str(model), "output": str(root / "runs"),
        "data": {"train": str(data), "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-3, "max_steps": 4, "batch_size": 4, "max_seq_len": 64, "eval_every": 2,
                  "mixed_precision": "no", "threads": 1, "report_to": report_to},
        "model_options": {"dtype": "fp32"},
    })


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recipe, Path, Path]:
    """One tiny run reporting to every installed tracker: W&B offline, MLflow to a file store the test names
    (MLflow 3 refuses file stores unless MLFLOW_ALLOW_FILE_STORE=true; the default is SQLite, tested below)."""
    if not INSTALLED:
        pytest.skip("none of tensorboard, mlflow, wandb is installed (pip install tunesmith[trackers])")
    root = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri())
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        recipe = _recipe(root, INSTALLED)
        folder = train(recipe)
    return recipe, folder.path, root / "mlruns"


def _needs(name: str) -> None:
    if name not in INSTALLED:
        pytest.skip(f"{name} is not installed (pip install {name}); its tracker cannot be checked")


def _expected(run: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl as {metric: [(step, value), ...]}."""
    out: dict[str, list[tuple[int, float]]] = {}
    for record in read_metrics(run / "metrics.jsonl"):
        for key, value in record.items():
            if key != "step":
                out.setdefault(key, []).append((record["step"], float(value)))
    return out


def test_tensorboard_events_equal_metrics_jsonl(tracked_run) -> None:
    _needs("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe, run, _ = tracked_run
    logdir = run / "tensorboard" / recipe.name
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    expected = _expected(run)
    assert set(events.Tags()["scalars"]) == set(expected)
    for key, points in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in points], key
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), key  # float32 in events
    assert "eval_loss" in expected and len(expected["loss"]) == 4
    hparams = yaml.safe_load(next(logdir.rglob("hparams.yml")).read_text())
    assert hparams["train.lr"] == 1e-3 and hparams["name"] == "tracked"


def test_mlflow_file_store_equals_metrics_jsonl(tracked_run) -> None:
    _needs("mlflow")
    from mlflow.tracking import MlflowClient

    recipe, run, store = tracked_run
    assert (store / "0").is_dir() or any(store.iterdir())  # the run went to the store the environment named
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name(recipe.name)
    (found,) = client.search_runs([experiment.experiment_id])
    expected = _expected(run)
    assert set(found.data.metrics) == set(expected)
    for key, points in expected.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(found.info.run_id, key))
        _assert_same_points(history, sorted(points), key)
    assert found.data.params["train.lr"] == "0.001" and found.data.params["adapter"] == "lora"
    assert found.data.params["train.report_to"] == json.dumps(INSTALLED)


def test_wandb_offline_history_equals_metrics_jsonl(tracked_run) -> None:
    _needs("wandb")
    recipe, run, _ = tracked_run
    (log,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    history: dict[str, list[tuple[int, float]]] = {}
    config = {}
    for record in _wandb_records(log.read_bytes()):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            for key, value in items.items():
                if not key.startswith("_"):
                    history.setdefault(key, []).append((items["_step"], value))
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in record.config.update})
    expected = _expected(run)
    assert set(history) == set(expected)
    for key, points in expected.items():
        _assert_same_points(sorted(history[key]), sorted(points), key)
    assert config["train.lr"] == 1e-3 and config["name"] == recipe.name


def _assert_same_points(got: list[tuple[int, float]], expected: list[tuple[int, float]], key: str) -> None:
    """Same steps exactly, same values to float tolerance (pytest.approx compares flat sequences only)."""
    assert [step for step, _ in got] == [step for step, _ in expected], key
    assert [value for _, value in got] == pytest.approx([value for _, value in expected]), key


def _wandb_records(data: bytes) -> list:
    """The protobuf records of a .wandb file: a 7-byte header, then LevelDB-style log blocks of 32 KiB whose
    chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last) join into records."""
    from wandb.proto import wandb_internal_pb2

    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_mlflow_defaults_to_sqlite_in_the_run_folder(tmp_path: Path, monkeypatch) -> None:
    _needs("mlflow")
    import mlflow

    recipe = recipe_from_dict({"name": "x", "model": "m", "output": str(tmp_path), "data": {"train": "d"},
                               "train": {"report_to": ["mlflow"]}})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uris: list[str] = []
    monkeypatch.setattr(mlflow, "set_tracking_uri", uris.append)

    class Accelerator:
        def init_trackers(self, name: str, config: dict, init_kwargs: dict) -> None:
            self.args = (name, config, init_kwargs)

    accelerator = Accelerator()
    trackers.start_trackers(accelerator, recipe, recipe.model_dump(mode="json"))
    assert uris == [f"sqlite:///{(tmp_path / 'x').resolve() / 'mlflow.db'}"]
    assert accelerator.args[0] == "x" and accelerator.args[1]["train.report_to"] == '["mlflow"]'


def test_a_missing_tracker_package_is_a_user_error_before_loading(tmp_path: Path, monkeypatch) -> None:
    recipe = recipe_from_dict({"name": "x", "model": "m", "output": str(tmp_path), "data": {"train": "d"},
                               "train": {"report_to": ["mlflow"]}})
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install mlflow"):
        trackers.accelerator_kwargs(recipe)


def test_report_to_typo_gets_a_did_you_mean() -> None:
    with pytest.raises(UserError, match="did you mean 'tensorboard'"):
        recipe_from_dict({"name": "x", "model": "m", "data": {"train": "d"}, "train": {"report_to": ["tensorbord"]}})


def test_flatten_keeps_scalars_and_writes_the_rest_as_json() -> None:
    flat = flatten({"a": {"b": 1, "c": None, "d": [1, 2]}, "e": "x", "f": True})
    assert flat == {"a.b": 1, "a.c": "null", "a.d": "[1, 2]", "e": "x", "f": True}
