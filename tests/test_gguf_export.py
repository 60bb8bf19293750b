"""`tunesmith export --format gguf`: the file transformers' GGUF reader loads back computes the merged model's
logits (f16 within gguf_export.TOLERANCE), for Llama, Mistral and Qwen2, from a LoRA run and from real models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.errors import UserError
from tunesmith.gguf.export import TOLERANCE, export_gguf, load_gguf
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.ship.merge import PARITY_PROMPTS
from tunesmith.ship.ollama import modelfile_text
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny, tiny_tokenizer
from tunesmith.train.loop import train

SMOLLM2 = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "smollm2-135m-instruct"
LLAMA3_JINJA = ("{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
                "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
                "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
                "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
"""Meta-Llama-3-8B-Instruct's chat template."""
CHATML_WITH_DEFAULT_SYSTEM = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
"""SmolLM2-Instruct's chat template: ChatML, with a system prompt of its own when a conversation has none."""


def logits_gap(reference: torch.nn.Module, tokenizer, gguf: Path) -> float:
    """Max |logit diff| on the parity prompts, reading the GGUF with plain transformers (not our loader)."""
    back = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    back_tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    gap = 0.0
    with torch.no_grad():
        for prompt in PARITY_PROMPTS:
            ids = tokenizer(prompt)["input_ids"]
            assert back_tokenizer(prompt)["input_ids"] == ids
            batch = torch.tensor([ids])
            gap = max(gap, float((reference(input_ids=batch).logits - back(input_ids=batch).logits).abs().max()))
    return gap


def test_stories260k_round_trip_through_the_cli(stories260k: Path, tmp_path: Path) -> None:
    out = tmp_path / "stories.gguf"
    result = CliRunner().invoke(app, ["export", str(stories260k), "--format", "gguf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "FROM ./stories.gguf" in result.output and (tmp_path / "stories.Modelfile").is_file()
    reference = AutoModelForCausalLM.from_pretrained(stories260k, dtype=torch.float32)
    gap = logits_gap(reference, AutoTokenizer.from_pretrained(stories260k), out)
    assert 0 < gap <= TOLERANCE["f16"]  # f16 rounding shows, within the tolerance


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_families_round_trip(family: str, tmp_path: Path) -> None:
    folder = save_tiny(family, tmp_path / family, vocab_size=300, **({"attention_bias": True} if family == "llama"
                                                                     else {}))
    result = export_gguf(folder, tmp_path / f"{family}.gguf", "f16")
    # A random tiny model's logits are small, so its f16 error is too (2.5e-4 measured on llama); a missing
    # q/k permutation gives 7.4e-3 here, under the export's absolute tolerance but not under this bound.
    assert result.max_abs_diff <= 1e-3
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert logits_gap(reference, AutoTokenizer.from_pretrained(folder), result.path) <= 1e-3


def test_lora_run_exports_its_merged_model_with_its_template(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(16, BASE_SKILLS, seed=1)))
    base = save_tiny("llama", tmp_path / "base", vocab_size=300)
    run = train(recipe_from_dict({
        "name": "lora", "model": str(base), "adapter": "lora", "output": str(tmp_path / "runs"),
        "data": {"train": str(data), "eval": 0.0, "template": "chatml"},
        "train": {"lr": 2e-2, "max_steps": 2, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32"}, "adapter_args": {"r": 4, "alpha": 8, "dropout": 0.0},
    })).path
    for outtype in ("f16", "q8_0"):
        result = export_gguf(run, outtype=outtype)
        assert result.path == run / f"lora-{outtype}.gguf" and result.max_abs_diff <= TOLERANCE[outtype]
    modelfile = result.modelfile.read_text()
    assert "<|im_start|>{{ .Role }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    _, tokenizer = load_gguf(run / "lora-f16.gguf")
    assert "<|im_start|>" in tokenizer.chat_template  # the run's template travels inside the file
    assert not (run / "merged").exists()  # merged in a scratch folder: only the GGUF and its Modelfile stay
    assert sorted(p.name for p in run.glob("lora-*")) == ["lora-f16.Modelfile", "lora-f16.gguf",
                                                         "lora-q8_0.Modelfile", "lora-q8_0.gguf"]


def test_refusals(tmp_path: Path) -> None:
    folder = save_tiny("gpt2", tmp_path / "gpt2", vocab_size=300)
    with pytest.raises(UserError, match="GGUF export maps llama, mistral, qwen2"):
        export_gguf(folder, tmp_path / "x.gguf")
    with pytest.raises(UserError, match="--outtype 'q4' is unknown"):
        export_gguf(folder, tmp_path / "x.gguf", "q4")
    llama = save_tiny("llama", tmp_path / "llama", vocab_size=300)
    (tmp_path / "taken.gguf").write_text("")
    with pytest.raises(UserError, match="--overwrite"):
        export_gguf(llama, tmp_path / "taken.gguf")


@pytest.mark.slow
def test_smollm2_round_trip(tmp_path: Path) -> None:
    """Our export of the real SmolLM2 chat model (read from its Q4_1 GGUF, de-quantized) loads back and matches."""
    source = SMOLLM2 / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not source.is_file():
        pytest.skip(f"SmolLM2 fixture not found at {SMOLLM2}")
    model, tokenizer = load_gguf(source)
    model.save_pretrained(tmp_path / "smollm2")
    tokenizer.save_pretrained(tmp_path / "smollm2")
    result = export_gguf(tmp_path / "smollm2", tmp_path / "smollm2-f16.gguf", "f16")
    assert result.max_abs_diff <= TOLERANCE["f16"]
    assert logits_gap(model, tokenizer, result.path) <= TOLERANCE["f16"]
    _, back_tokenizer = load_gguf(result.path)
    assert back_tokenizer.chat_template == tokenizer.chat_template and os.path.getsize(result.path) > 2e8


def test_merged_folder_and_gguf_file_are_serve_targets(tmp_path: Path) -> None:
    """`tunesmith serve` takes a merged model folder and a GGUF file; each answers as transformers runs it."""
    openai = pytest.importorskip("openai")
    from tunesmith.serve.local import local_server
    from tunesmith.serve.server import ServeOptions

    folder = save_tiny("llama", tmp_path / "merged", vocab_size=300)
    gguf = export_gguf(folder, tmp_path / "tiny.gguf", "f16").path
    references = {"merged": (AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)),
                  "tiny": load_gguf(gguf)}
    with local_server(ServeOptions([str(folder), str(gguf)])) as running:
        client = openai.OpenAI(base_url=running.url, api_key="none", max_retries=0)
        assert {m.id for m in client.models.list().data} == {"merged", "tiny"}
        for name, (model, tokenizer) in references.items():
            ids = tokenizer("Once upon a time", return_tensors="pt")["input_ids"]
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                 do_sample=False, eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
            served = client.completions.create(model=name, prompt="Once upon a time", max_tokens=8, temperature=0)
            assert served.choices[0].text == tokenizer.decode(out[0, ids.shape[1]:]), name


@pytest.mark.parametrize(("jinja", "template", "system"), [
    (LLAMA3_JINJA, "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>", None),
    (CHATML_WITH_DEFAULT_SYSTEM, "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>",
     'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""'),
], ids=["llama3", "chatml-with-default-system"])
def test_modelfile_translates_a_models_own_template(jinja: str, template: str, system: str | None) -> None:
    tokenizer = tiny_tokenizer(None, 300)
    tokenizer.chat_template = jinja
    text = modelfile_text("m.gguf", "auto", tokenizer.eos_token, tokenizer)
    assert f'TEMPLATE """{{{{- range .Messages }}}}{template}' in text
    assert (system in text) if system else "SYSTEM" not in text


def test_modelfile_says_when_it_cannot_translate_a_template() -> None:
    tokenizer = tiny_tokenizer(None, 300)
    tokenizer.chat_template = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    text = modelfile_text("m.gguf", "auto", "", tokenizer)
    assert "TEMPLATE" in text and 'TEMPLATE """' not in text and "neither ChatML nor Llama 3" in text
    # a ChatML look-alike that renders a conversation differently is not taken for ChatML
    tokenizer.chat_template = CHATML_WITH_DEFAULT_SYSTEM.replace("'\n'}}{% endfor", "'\n\n'}}{% endfor")
    assert 'TEMPLATE """' not in modelfile_text("m.gguf", "auto", "", tokenizer)


def test_export_writes_the_template_of_a_model_folder(tmp_path: Path) -> None:
    folder = save_tiny("llama", tmp_path / "m", vocab_size=300)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = LLAMA3_JINJA
    tokenizer.save_pretrained(folder)
    modelfile = export_gguf(folder, tmp_path / "m.gguf").modelfile.read_text()
    assert "<|start_header_id|>{{ .Role }}<|end_header_id|>" in modelfile
