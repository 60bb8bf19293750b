"""A newcomer finds a behaviour from its CLI verb in a few files: the files a real call passes through from
`tunesmith train` to the SFT loss, from `tunesmith eval --suite mmlu` to a log-likelihood and from
`tunesmith serve` to a sampled token (tests/call_chain.py reads them off the live stack)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import torch
import uvicorn
from typer.testing import CliRunner

from tests.call_chain import PACKAGE, chain_of_files, recorded_chain
from tunesmith.cli import app
from tunesmith.evaluate.benchmarks import multiple_choice
from tunesmith.methods.shared import token_nll
from tunesmith.serve.sampling import RowState
from tunesmith.train.launch import free_port

MAX_FILES = 4
runner = CliRunner()


def test_chain_of_files_starts_at_the_verb_and_skips_wrappers() -> None:
    files = [str(PACKAGE / name) for name in ("cli.py", "commands/common.py", "commands/train.py",
                                               "commands/common.py", "train/loop.py", "train/loop.py",
                                               "methods/unit.py")]
    assert chain_of_files(["/usr/lib/python3/typer/main.py", *files, torch.__file__]) == [
        "commands/train.py", "train/loop.py", "methods/unit.py"]


def test_train_reaches_the_sft_loss_in_few_files(stories260k, shared_data, tmp_path) -> None:
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(f"name: hops\nmodel: {stories260k}\noutput: {tmp_path}\nadapter: lora\n"
                      f"data: {{train: {shared_data / 'alpaca_1k.jsonl'}, max_rows: 8, eval: 0, template: plain}}\n"
                      "train: {max_steps: 1, batch_size: 2, max_seq_len: 64, mixed_precision: 'no'}\n")
    with recorded_chain(token_nll.token_nll_sum, token_nll.kept_nll_sum, token_nll.fused_linear_nll_sum) as files:
        result = runner.invoke(app, ["train", str(recipe)])
    assert result.exit_code == 0, result.output
    assert files[0] == "commands/train.py" and files[-1] == "methods/shared/token_nll.py", files
    assert len(files) <= MAX_FILES, files


def test_eval_reaches_a_loglikelihood_in_few_files(stories260k, shared_data, tmp_path) -> None:
    mmlu = shared_data / "mmlu" / "test" / "anatomy_test.csv"
    with recorded_chain(multiple_choice._score_batch) as files:
        result = runner.invoke(app, ["eval", str(stories260k), "--suite", "mmlu", "--mmlu", str(mmlu),
                                     "--data-dir", str(shared_data), "--limit", "1", "--shots", "0",
                                     "--dtype", "fp32", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert files[0] == "commands/eval.py" and files[-1] == "evaluate/benchmarks/multiple_choice.py", files
    assert len(files) <= MAX_FILES, files


def test_serve_reaches_a_sampled_token_in_few_files(stories260k, tmp_path, monkeypatch) -> None:
    servers: list[uvicorn.Server] = []

    def run_here(app_, host: str, port: int, log_level: str) -> None:
        servers.append(uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level=log_level)))
        servers[0].run()

    monkeypatch.setattr(uvicorn, "run", run_here)
    port = free_port()
    with recorded_chain(RowState.pick) as files:
        verb = threading.Thread(target=runner.invoke, args=(app, [
            "serve", f"base={stories260k}", "--port", str(port), "--request-log", str(tmp_path / "log.jsonl")]))
        verb.start()
        try:
            reply = _first_completion(f"http://127.0.0.1:{port}/v1/completions")
        finally:
            while not servers:
                time.sleep(0.1)
            servers[0].should_exit = True
            verb.join(60)
    assert reply["choices"][0]["text"] is not None
    assert files[0] == "commands/serve.py" and files[-1] == "serve/sampling.py", files
    assert len(files) <= MAX_FILES, files


def _first_completion(url: str, wait_s: float = 120.0) -> dict:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            response = httpx.post(url, json={"model": "base", "prompt": "Once upon", "max_tokens": 2}, timeout=60)
            response.raise_for_status()
            return response.json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer at {url}")
            time.sleep(0.5)
