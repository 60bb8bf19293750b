"""Pieces of `tunesmith serve` that need no model: per-row sampling and stop texts, path confinement, context
bounds, pickle refusal and the --print-vllm command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.test_run_folder_trust import write_run
from tunesmith.errors import UserError
from tunesmith.runs.record import RUN_FILE
from tunesmith.serve.completions import params_for
from tunesmith.serve.errors import ApiError
from tunesmith.serve.sampling import RowState
from tunesmith.serve.schemas import ChatRequest
from tunesmith.serve.store import ModelStore
from tunesmith.serve.targets import adapter_spec, check_name
from tunesmith.serve.vllm import vllm_commands
from tunesmith.testing.tiny import tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def row(tokenizer, **kw) -> tuple[RowState, list[str]]:
    sent: list[str] = []
    settings = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 50, "stops": (), "eos_ids": frozenset({2})}
    settings.update(kw)
    state = RowState(tokenizer=tokenizer, generator=torch.Generator().manual_seed(0), on_text=sent.append,
                     **settings)
    return state, sent


def test_stop_text_is_never_shown_even_in_part(tokenizer) -> None:
    state, sent = row(tokenizer, stops=("STOP",))
    for token in tokenizer("Hello there STOP and more", add_special_tokens=False)["input_ids"]:
        if not state.done:
            state.push(token)
    assert state.finish_reason == "stop" and "".join(sent) == "Hello there "
    assert all("S" not in piece for piece in sent)  # "S", "ST"... were held back, then dropped


def test_eos_and_budget_end_a_row(tokenizer) -> None:
    state, sent = row(tokenizer, max_tokens=3)
    ids = tokenizer("one two three four", add_special_tokens=False)["input_ids"]
    for token in ids[:3]:
        state.push(token)
    assert state.finish_reason == "length" and "".join(sent) == tokenizer.decode(ids[:3])
    state, sent = row(tokenizer)
    state.push(ids[0])
    state.push(2)
    assert state.finish_reason == "stop" and state.generated == 2 and "".join(sent) == tokenizer.decode(ids[:1])


def test_sampling_is_seeded_per_row_and_top_p_keeps_the_nucleus(tokenizer) -> None:
    logits = torch.tensor([2.0, 1.9, 0.0, -1.0, -3.0])
    a, _ = row(tokenizer, temperature=1.0)
    b, _ = row(tokenizer, temperature=1.0)
    assert [a.pick(logits) for _ in range(30)] == [b.pick(logits) for _ in range(30)]
    nucleus, _ = row(tokenizer, temperature=1.0, top_p=0.5)
    assert {nucleus.pick(logits) for _ in range(200)} <= {0, 1}  # p(0)+p(1) > 0.5 with p(0) < 0.5
    wide, _ = row(tokenizer, temperature=1.0, top_p=1.0)
    assert len({wide.pick(logits) for _ in range(200)}) >= 3
    greedy, _ = row(tokenizer)
    assert greedy.pick(logits) == 0


def test_confinement_to_the_adapter_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    store = ModelStore([], adapter_root=root)
    assert store.confine("a") == (root / "a").resolve()
    for bad in ("..", "../outside", str(tmp_path / "outside"), "a/../../outside", "link"):
        with pytest.raises(ApiError, match="outside the adapter root"):
            store.confine(bad)
    with pytest.raises(ApiError) as err:
        ModelStore([]).confine("a")
    assert err.value.status == 403
    for name in ("../x", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(UserError):
            check_name(name)


def test_prompt_plus_max_tokens_bounded_by_the_context() -> None:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=100)
    assert params_for(request, 400, 512, chat=True).max_tokens == 100
    with pytest.raises(ApiError) as err:
        params_for(request, 413, 512, chat=True)
    assert err.value.status == 400 and err.value.code == "context_length_exceeded"
    default = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    assert params_for(default, 500, 512, chat=True).max_tokens == 12  # what the context leaves
    with pytest.raises(ApiError):
        params_for(default, 512, 512, chat=True)


def adapter_folder(path: Path, base: str, weights: str = "adapter_model.safetensors", **config) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                          "base_model_name_or_path": base, **config}))
    (path / weights).write_bytes(b"")
    return path


def test_pickled_adapters_are_refused(tmp_path: Path) -> None:
    folder = adapter_folder(tmp_path / "pickled", "/models/base", weights="adapter_model.bin")
    with pytest.raises(UserError, match="pickled weights"):
        adapter_spec("pickled", folder)


def test_print_vllm_serves_lora_and_explains_the_rest(tmp_path: Path) -> None:
    lora = adapter_folder(tmp_path / "lora", "/models/base", r=32)
    dora = adapter_folder(tmp_path / "dora", "/models/base", use_dora=True)
    ia3 = adapter_folder(tmp_path / "ia3", "/models/base", peft_type="IA3")
    text = vllm_commands([f"mine={lora}", str(dora), str(ia3)], port=9000, with_key=True)
    command, *notes = [line for line in text.splitlines() if line]
    assert command == (f"vllm serve /models/base --host 127.0.0.1 --port 9000 --enable-lora --lora-modules "
                       f"mine={lora} --max-lora-rank 32 --api-key $TUNESMITH_API_KEY")
    assert "dora" in notes[0] and "10849" in notes[0] and "tunesmith merge" in notes[0]
    assert "IA3" in notes[1] and "merge" in notes[1]


def test_print_vllm_names_the_run_to_merge_for_an_adapter_in_a_run_folder(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", adapter="dora")
    shutil.rmtree(run / "adapter")
    adapter_folder(run / "adapter", "org/model", use_dora=True)
    assert (run / RUN_FILE).is_file()
    note = vllm_commands([str(run / "adapter")]).splitlines()[-1]
    assert f"tunesmith merge {run}" in note


def test_print_vllm_points_tokenizer_at_a_folder_with_tokenizer_files(tmp_path: Path) -> None:
    gguf = tmp_path / "models" / "chat.Q4_1.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    alone = vllm_commands([str(gguf)])
    command, *notes = [line for line in alone.splitlines() if line]
    assert "--tokenizer" not in command and "add --tokenizer" in notes[0]  # the GGUF's folder holds no tokenizer
    lora = adapter_folder(tmp_path / "lora", str(gguf))
    tokenizer_config = lora / "tokenizer_config.json"
    tokenizer_config.write_text("{}")
    command = vllm_commands([str(lora)]).splitlines()[0]
    assert f"--tokenizer {lora}" in command
    (gguf.parent / "tokenizer.json").write_text("{}")
    tokenizer_config.unlink()
    assert f"--tokenizer {gguf.parent}" in vllm_commands([str(lora)])


def test_cli_serve_prints_vllm_and_needs_a_key_off_loopback(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tunesmith.cli import app

    lora = adapter_folder(tmp_path / "lora", "/models/base")
    result = CliRunner().invoke(app, ["serve", f"mine={lora}", "--print-vllm", "--port", "9100"])
    assert result.exit_code == 0 and f"--lora-modules mine={lora}" in result.output and "--port 9100" in result.output
    monkeypatch.delenv("TUNESMITH_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", str(lora), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "beyond this machine" in result.output
