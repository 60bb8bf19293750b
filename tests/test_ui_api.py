"""The dashboard's JSON API on real tiny runs: rows and curves from run folders, eval and comparison tables,
the CLI's validation messages, the token and path guards, and the chat engine against plain transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from ui_fixtures import local_client, tiny_model_and_data, tiny_recipe

from tunesmith.evaluate.forgetting import compare
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.runs.metrics import read_metrics
from tunesmith.train.loop import train
from tunesmith.ui.access import Access
from tunesmith.ui.app import create_app
from tunesmith.ui.guard import is_loopback, resolve_token, run_path
from tunesmith.ui.launch import validate


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished tiny runs (different learning rates) in one runs folder."""
    root = tmp_path_factory.mktemp("ui-api")
    model, data = tiny_model_and_data(root)
    for name, lr in (("alpha", 1e-3), ("beta", 3e-3)):
        train(recipe_from_dict(tiny_recipe(name, model, data, root / "runs", lr=lr)))
    return root / "runs"


@pytest.fixture
def client(runs: Path) -> TestClient:
    return local_client(create_app(runs))


def test_runs_table_rows_come_from_the_run_folders(client: TestClient, runs: Path) -> None:
    rows = {r["name"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(rows) == {"alpha", "beta"}
    for name, row in rows.items():
        evals = [r["eval_loss"] for r in read_metrics(runs / name / "metrics.jsonl") if "eval_loss" in r]
        assert row["status"] == "done" and row["steps"] == 4 and row["method"] == "sft" and row["adapter"] == "lora"
        assert row["best_eval_loss"] == pytest.approx(min(evals))
        assert row["wall_time_s"] is not None and row["wall_time_s"] >= 0


def test_curves_equal_metrics_jsonl(client: TestClient, runs: Path) -> None:
    curves = client.get("/api/runs/alpha/metrics").json()["curves"]
    records = read_metrics(runs / "alpha" / "metrics.jsonl")
    assert curves["loss"] == [[r["step"], r["loss"]] for r in records if "loss" in r]
    assert curves["eval_loss"] == [[r["step"], r["eval_loss"]] for r in records if "eval_loss" in r]


def test_run_page_shows_eval_forgetting_and_task_score(client: TestClient, runs: Path, tmp_path: Path) -> None:
    tuned = {"heldout": {"exact_match": 0.5, "n": 10}, "mmlu": {"acc": 0.30, "n": 40}, "gsm8k": {"exact_match": 0.2, "n": 20}}
    base = {"heldout": {"exact_match": 0.1, "n": 10}, "mmlu": {"acc": 0.32, "n": 40}, "gsm8k": {"exact_match": 0.25, "n": 20}}
    items = [{"id": str(i), "correct": {"exact_match": i < 5}} for i in range(20)]  # base: 5 of 20 right
    lost = [{"id": str(i), "correct": {"exact_match": i < 4}} for i in range(20)]  # tuned: lost item 4
    deltas = compare(tuned, base, {"gsm8k": lost}, {"gsm8k": items})
    record = {"target": {"name": "beta"}, "results": tuned, "base_results": base,
              "deltas": [d.as_dict() for d in deltas], "gate": {"max_drop": None, "failures": []}}
    (runs / "beta" / "eval.json").write_text(json.dumps(record))
    try:
        page = client.get("/api/runs/beta").json()
        row = page["row"]
        assert row["task_score"] == {"metric": "exact_match", "value": 0.5}
        worst = row["forgetting"]  # the general benchmark that lost most, with its paired interval
        assert (worst["suite"], worst["change"]) == ("gsm8k", pytest.approx(-5.0))
        assert worst["ci95"] == pytest.approx(list(deltas[2].interval)) and worst["ci95"][0] < -5.0 < worst["ci95"][1]
        assert worst["suites"] == ["mmlu", "gsm8k"]
        assert {(r["suite"], r["metric"]) for r in page["eval_rows"]} >= {("mmlu", "acc"), ("heldout", "exact_match")}
        assert page["data"]["train_examples"] > 0 and page["recipe"]["train"]["lr"] == 3e-3
    finally:
        (runs / "beta" / "eval.json").unlink()


def test_comparison_folders_are_found_and_unfinished_strategies_show_empty_cells(client: TestClient, runs: Path) -> None:
    folder = runs / "cmp-1"
    (folder / "logs").mkdir(parents=True)
    (folder / "spec.yaml").write_text("name: cmp-1\nrecipe: {model: m}\nstrategies: {lora: {}, full: {adapter: full}}\n")
    try:
        (found,) = client.get("/api/runs").json()["comparisons"]
        assert (found["name"], found["strategies"], found["finished"]) == ("cmp-1", ["lora", "full"], False)
        page = client.get("/api/comparisons/cmp-1").json()
        assert [r["strategy"] for r in page["rows"]] == ["base (untrained)", "lora", "full"]
        assert page["cells"][1][page["columns"].index("task_loss")] == "-" and page["rows"][1]["run"] is None
        assert [p["key"] for p in page["panels"]][:2] == ["task_loss", "general_change_pts"]
        assert "no comparison named 'nope'" in client.get("/api/comparisons/nope").json()["error"]
    finally:
        (folder / "spec.yaml").unlink()
        (folder / "logs").rmdir()
        folder.rmdir()


def test_nproc_is_validated_with_the_clis_messages(client: TestClient) -> None:
    from tunesmith.ui.launch import MAX_NPROC, train_command

    recipe = {"name": "x", "model": "m", "data": {"train": "d"}}
    for bad in (0, -1, MAX_NPROC + 1, "2x", 1.5, True):
        answer = client.post("/api/validate", json={"recipe": recipe, "nproc": bad})
        assert answer.status_code == 400 and answer.json()["error"].startswith("--nproc: give a whole number")
    split = client.post("/api/validate", json={"recipe": recipe, "nproc": 2}).json()["error"]
    assert split.startswith("train.grad_accum=1 cannot be split over 2 processes")
    answer = client.post("/api/validate", json={"recipe": {**recipe, "train": {"grad_accum": 2}}, "nproc": "2"})
    assert answer.json()["nproc"] == 2
    assert train_command(Path("r.yaml"), ["--resume"], 2)[-4:] == ["r.yaml", "--resume", "--nproc", "2"]
    assert "--nproc" not in train_command(Path("r.yaml"), [], 1)


def test_validation_errors_are_the_clis_with_did_you_mean(client: TestClient) -> None:
    answer = client.post("/api/validate", json={"text": "name: x\nmodel: m\ndata: {train: d}\ntrain: {lerning_rate: 1}"})
    assert answer.status_code == 400
    assert "train.lerning_rate: unknown key; did you mean 'train.lr'?" in answer.json()["error"]
    assert client.post("/api/validate", json={"text": "[1, 2]"}).json()["error"].startswith("recipe: a recipe is a mapping")
    assert client.post("/api/validate", json={"recipe": {"name": "x", "model": "m", "data": {"train": "d"}}}).json()["ok"]


def test_launched_recipes_always_write_into_the_runs_folder(runs: Path) -> None:
    recipe = validate({"name": "x", "model": "m", "data": {"train": "d"}, "output": "/somewhere/else"}, runs)
    assert recipe.run_dir.resolve() == (runs / "x").resolve()
    for bad in ("../x", ".hidden", "a/b", ".."):
        with pytest.raises(Exception, match="run name|outside"):
            run_path(runs, bad)


def test_token_is_required_on_every_data_route(runs: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert resolve_token("s3cret") == "s3cret" and len(resolve_token(None)) > 20
    guarded = local_client(create_app(runs, access=Access.build("127.0.0.1", 7860, "s3cret")))
    assert guarded.get("/api/runs").status_code == 401
    assert guarded.get("/").status_code == 401
    assert guarded.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert guarded.get("/static/app.js").status_code == 200  # code only, no data


def test_unknown_and_escaping_run_names_are_refused(client: TestClient) -> None:
    assert "no run named" in client.get("/api/runs/nope").json()["error"]
    assert client.get("/api/runs/..%2F..%2Fetc").status_code in (400, 404)
    assert client.post("/api/runs/alpha/stop", json={}).json()["error"].startswith("run alpha is not training")


def test_chat_answers_like_plain_transformers_greedy(client: TestClient, runs: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    messages = [{"role": "user", "content": "Name a colour."}]
    answer = client.post("/api/runs/alpha/v1/chat/completions", json={"messages": messages, "max_tokens": 12}).json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["role"] == "assistant"
    adapter = runs / "alpha" / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    base = json.loads((runs / "alpha" / "run.json").read_text())["base_model"]
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter).eval()
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, do_sample=False, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id)
    new = out[0, prompt["input_ids"].shape[1]:].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    expected = tokenizer.decode(new, skip_special_tokens=False).split(tokenizer.eos_token)[0].strip()
    assert expected and answer["choices"][0]["message"]["content"] == expected
    assert answer["usage"]["prompt_tokens"] == prompt["input_ids"].shape[1]
    bad = client.post("/api/runs/alpha/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]})
    assert bad.status_code == 400 and "messages[0]" in bad.json()["error"]


def test_row_shows_the_best_eval_loss_not_the_last(tmp_path: Path) -> None:
    from tunesmith.runs.record import RunRecord
    from tunesmith.ui.views import run_row

    record = RunRecord(path=tmp_path, name="r", status="done", recipe={}, base_model="b", method="sft", adapter="lora",
                       started="2026-01-01T00:00:00+00:00", ended="2026-01-01T00:01:30+00:00",
                       state={"step": 9, "best_eval_loss": 1.5}, final={"eval_loss": 2.0, "best_eval_loss": 1.5})
    row = run_row(record)
    assert row["best_eval_loss"] == 1.5 and row["wall_time_s"] == 90.0 and row["steps"] == 9
    assert run_row(RunRecord(**{**record.__dict__, "status": "running"}), launcher="gone")["status"] == "killed"


def test_launching_over_an_existing_run_needs_overwrite(client: TestClient) -> None:
    recipe = {"name": "alpha", "model": "m", "data": {"train": "d"}}
    answer = client.post("/api/launch", json={"recipe": recipe})
    assert answer.status_code == 400 and "already holds a run; tick overwrite" in answer.json()["error"]
