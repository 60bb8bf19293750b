"""On a real chat model, SmolLM2-135M-Instruct, given as the GGUF file a package ships: it loads through
`model: <file>.gguf`, renders and masks chats exactly as its own template does, and LoRA SFT on real data
lowers held-out loss while keeping the model's habit of ending its turn.

All slow: the GGUF is converted once per test run (conftest's `smollm2_gguf_cache`), then each test loads
the converted folder (~2 s)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import SMOLLM2
from tunesmith.data.cache import CACHE_ENV
from tunesmith.data.formats import parse_rows
from tunesmith.data.loading import load_rows
from tunesmith.data.tokenize import check_round_trip, tokenize_conversation, tokenize_prompt
from tunesmith.data.types import IGNORE_INDEX, Conversation, Message
from tunesmith.models.load import load_config, load_model, load_tokenizer

pytestmark = pytest.mark.slow
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
IM_END = "<|im_end|>"


def _gguf_file() -> Path:
    return next(SMOLLM2.glob("*.gguf"))


def test_model_accepts_a_gguf_file_or_its_folder(smollm2_gguf_cache: Path, smollm2: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(smollm2_gguf_cache))  # the session's conversion: a cache hit
    for given in (_gguf_file(), SMOLLM2):
        config = load_config(str(given))
        assert (config.model_type, config.num_hidden_layers, config.vocab_size) == ("llama", 30, 49152)
        assert load_tokenizer(str(given)).eos_token == IM_END
    saved = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in saved  # a plain model: merge and save_pretrained work on it


def test_converted_model_answers_as_the_reference(smollm2: Path) -> None:
    """Greedy answers and prompt ids equal the fixture's reference (transformers' GGUF loader, fp32)."""
    reference = json.loads((SMOLLM2 / "reference_greedy.json").read_text())["greedy"]
    tokenizer = load_tokenizer(str(smollm2))
    model = load_model(str(smollm2), dtype="fp32", tokenizer=tokenizer).eval()
    for item in reference[:2]:
        ids = tokenize_prompt(tokenizer, (Message("user", item["user"]),))
        assert ids == item["prompt_ids"]
        out = model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)
        assert tokenizer.decode(out[0, len(ids):]) == item["greedy_40"]


def test_trained_tokens_are_the_answer_and_its_end_of_turn(smollm2: Path) -> None:
    """pad = eos = <|im_end|> here; masking by pad id would drop the end of turn. It must be trained."""
    tokenizer = load_tokenizer(str(smollm2))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(IM_END)
    answer = "Paris is the capital of France."
    conv = Conversation((Message("user", "What is the capital of France?"), Message("assistant", answer)))
    sample = tokenize_conversation(tokenizer, conv, max_len=4096)
    trained = [t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == answer + IM_END
    assert trained[-1] == tokenizer.eos_token_id


def test_training_rendering_is_the_models_own_template(smollm2: Path) -> None:
    """Our training ids equal apply_chat_template's, whose default system prompt is included."""
    tokenizer = load_tokenizer(str(smollm2))
    conv = Conversation((Message("user", "Name a colour."), Message("assistant", "Blue.")))
    check_round_trip(tokenizer, conv)
    sample = tokenize_conversation(tokenizer, conv, max_len=4096)
    expected = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in conv.messages], return_dict=False)
    assert sample.input_ids == list(expected)
    assert DEFAULT_SYSTEM in tokenizer.decode(sample.input_ids)


def test_sharegpt_system_turn_is_kept(smollm2: Path, tmp_path: Path) -> None:
    row = {"conversations": [{"from": "system", "value": "You answer like a pirate."},
                             {"from": "human", "value": "Hello?"}, {"from": "gpt", "value": "Ahoy!"}]}
    file = tmp_path / "chat.jsonl"
    file.write_text(json.dumps(row) + "\n")
    (conv,) = parse_rows(load_rows(file)).examples
    assert conv.messages[0] == Message("system", "You answer like a pirate.")
    tokenizer = load_tokenizer(str(smollm2))
    text = tokenizer.decode(tokenize_conversation(tokenizer, conv, max_len=4096).input_ids)
    assert "<|im_start|>system\nYou answer like a pirate.<|im_end|>" in text
    assert DEFAULT_SYSTEM not in text  # the template's default replaces no given system turn


def test_lora_sft_from_the_gguf_lowers_held_out_loss_and_still_ends_its_turn(
        smollm2_gguf_cache: Path, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesmith.recipe.spec import recipe_from_dict
    from tunesmith.train.loop import train

    monkeypatch.setenv(CACHE_ENV, str(smollm2_gguf_cache))
    recipe = recipe_from_dict({
        "name": "smollm2-lora", "model": str(_gguf_file()), "output": str(tmp_path), "adapter": "lora",
        "data": {"train": str(shared_data / "alpaca_1k.jsonl"), "max_rows": 240, "eval": 40 / 240, "cache": False},
        "train": {"max_steps": 12, "batch_size": 4, "max_seq_len": 256, "lr": 2e-4, "threads": 2},
    })
    start = time.perf_counter()
    run = train(recipe)
    seconds = time.perf_counter() - start
    info = json.loads((run.path / "run.json").read_text())
    before, after = info["final"]["eval_loss_before"], info["final"]["eval_loss"]
    print(f"\nSmolLM2 LoRA SFT (alpaca 200 train / 40 held out, 12 steps x 4 x 256): "
          f"held-out loss {before:.4f} -> {after:.4f} in {seconds:.0f} s")
    assert after < before - 0.02
    answer = _assert_generation_ends_its_turn(run.path)
    _assert_merge_and_export_ship_it(run.path, answer, tmp_path)


def _assert_generation_ends_its_turn(run_dir: Path) -> list[int]:
    """Greedy generation with the tuned model stops on <|im_end|> well before the token limit."""
    from tunesmith.runs.load import load_target
    from tunesmith.runs.targets import resolve_target

    loaded = load_target(resolve_target(str(run_dir)), dtype="fp32")
    ids = tokenize_prompt(loaded.tokenizer, (Message("user", "What is the capital of France?"),))
    out = loaded.model.generate(torch.tensor([ids]), max_new_tokens=60, do_sample=False)
    new = out[0, len(ids):].tolist()
    assert loaded.end_of_turn == IM_END
    assert new[-1] == loaded.tokenizer.eos_token_id and len(new) < 60, loaded.tokenizer.decode(new)
    assert "Paris" in loaded.tokenizer.decode(new)
    return new


def _assert_merge_and_export_ship_it(run_dir: Path, answer: list[int], tmp_path: Path) -> None:
    """The run on a GGUF base merges into a plain safetensors model (stored dtype of the de-quantized base)
    that answers as base + adapter did, and exports as a PEFT folder that names its base."""
    from transformers import AutoModelForCausalLM

    from tunesmith.ship.merge import export_run, merge_run

    merged = merge_run(run_dir, tmp_path / "merged")
    print(f"merge: max |logit diff| {merged.max_abs_diff:.2e} (fp32, tolerance {merged.tolerance:.2e}), saved {merged.dtype}: {merged.saved_max_abs_diff:.2e}")
    assert merged.max_abs_diff <= merged.tolerance <= 1e-3 and list(merged.out.glob("*.safetensors"))
    assert "quantization_config" not in json.loads((merged.out / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(merged.out, dtype=torch.float32)
    tokenizer = load_tokenizer(str(merged.out))
    ids = tokenize_prompt(tokenizer, (Message("user", "What is the capital of France?"),))
    out = model.generate(torch.tensor([ids]), max_new_tokens=60, do_sample=False)
    assert out[0, len(ids):].tolist() == answer, "the merged model answers as base + adapter did"
    exported = export_run(run_dir, tmp_path / "exported")
    config = json.loads((exported / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] and (exported / "adapter_model.safetensors").stat().st_size > 0
