"""Model, tokenizer and config loading (tunesmith.models.load) and the tiny-model factory (tunesmith.testing.tiny)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunesmith.errors import UserError
from tunesmith.models import load as models
from tunesmith.models.load import count_parameters, load_config, load_model, load_tokenizer, resolve_dtype
from tunesmith.runs.record import RUN_FILE
from tunesmith.testing.tiny import (
    BOS_ID,
    EOS_ID,
    FAMILIES,
    PAD_ID,
    UNK_ID,
    save_tiny,
    tiny_config,
    tiny_model,
    tiny_tokenizer,
)

VOCAB = 300
HIDDEN, LAYERS, HEADS, KV_HEADS, INTER = 64, 2, 4, 2, 128
NO_SDPA = {"gemma2"}  # attention soft-capping: eager only


def _attn(family: str) -> str:
    return "eager" if family in NO_SDPA else "sdpa"


def _expected_params(family: str, tied: bool) -> int:
    """A from-the-architecture estimate that ignores norms and biases (a few hundred parameters)."""
    gated = family not in ("gpt2", "gpt_neox")
    kv_dim = HIDDEN // HEADS * KV_HEADS if gated else HIDDEN
    attention = 2 * HIDDEN * HIDDEN + 2 * HIDDEN * kv_dim
    mlp = (3 if gated else 2) * HIDDEN * INTER
    embeddings = VOCAB * HIDDEN * (1 if tied else 2) + (512 * HIDDEN if family == "gpt2" else 0)
    return embeddings + LAYERS * (attention + mlp)


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "llama", vocab_size=VOCAB)


# --- tiny models -------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_builds_at_intended_size_with_uniform_loss(family: str) -> None:
    model = tiny_model(family, VOCAB)
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (HIDDEN, LAYERS, VOCAB)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert model.get_input_embeddings().weight.shape == (VOCAB, HIDDEN)
    assert next(model.parameters()).dtype == torch.float32
    _, total = count_parameters(model)
    assert total == pytest.approx(_expected_params(family, config.tie_word_embeddings), rel=0.03)

    ids = torch.randint(4, VOCAB, (2, 24), generator=torch.Generator().manual_seed(0))
    loss = model(input_ids=ids, labels=ids).loss
    # A freshly initialised model is close to uniform over the vocabulary.
    assert torch.isfinite(loss)
    assert abs(loss.item() - math.log(VOCAB)) < 0.2


@pytest.mark.parametrize("family", FAMILIES)
def test_save_tiny_reloads_with_identical_logits(family: str, tmp_path: Path) -> None:
    folder = save_tiny(family, tmp_path / family, vocab_size=VOCAB, seed=3)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reference = tiny_model(family, len(tokenizer), seed=3)
    loaded = load_model(str(folder), dtype="fp32", attn_implementation=_attn(family))
    assert type(loaded) is type(reference)
    ids = tokenizer(["Once upon a time, Lily saw a dog."], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, reference(ids).logits)


def test_tiny_model_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b, c = tiny_model("llama", VOCAB, seed=1), tiny_model("llama", VOCAB, seed=1), tiny_model("llama", VOCAB, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_tiny_config_overrides_and_mistakes() -> None:
    assert tiny_config("llama", VOCAB, tie_word_embeddings=True).tie_word_embeddings is True
    assert tiny_config("gpt2", VOCAB, hidden=32, heads=2).n_embd == 32
    with pytest.raises(UserError, match="did you mean 'llama'"):
        tiny_config("lama", VOCAB)
    with pytest.raises(UserError, match="did you mean 'rms_norm_eps'"):
        tiny_config("llama", VOCAB, rms_norm_esp=1e-6)
    with pytest.raises(UserError, match="divisible"):
        tiny_config("llama", VOCAB, heads=3)


def test_tiny_tokenizer_is_byte_level_deterministic_and_has_specials() -> None:
    tok = tiny_tokenizer()
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (UNK_ID, BOS_ID, EOS_ID, PAD_ID)
    assert tok.padding_side == "right"
    assert len(tok) == 512
    text = "Ünïcode ✓, emoji 😀 and tabs\t never hit unk"
    ids = tok(text).input_ids
    assert ids[0] == BOS_ID and UNK_ID not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tiny_tokenizer().backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    # Trained on the given texts: a word repeated there becomes a single token.
    custom = tiny_tokenizer(["zyzzyva " * 50], vocab_size=300)
    assert len(custom(" zyzzyva", add_special_tokens=False).input_ids) == 1
    with pytest.raises(UserError, match="at least 260"):
        tiny_tokenizer(vocab_size=256)


def test_save_tiny_folder_loads_with_auto_classes(tiny_llama_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert model.config.vocab_size == len(tok)
    assert tok.pad_token_id == PAD_ID and model.generation_config.pad_token_id == PAD_ID


# --- dtype -------------------------------------------------------------------------------------------


def test_resolve_dtype_explicit_names() -> None:
    assert resolve_dtype("bf16") is resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("fp16") is resolve_dtype("Float16") is torch.float16
    assert resolve_dtype("fp32") is resolve_dtype("float32") is torch.float32
    with pytest.raises(UserError, match="did you mean 'float16'"):
        resolve_dtype("flaot16")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu avx2 avx512f", torch.float32),
        ("fpu avx512f avx512_bf16", torch.bfloat16),
        ("fpu amx_bf16", torch.bfloat16),
    ],
)
def test_resolve_dtype_auto_on_cpu_reads_cpu_flags(
    flags: str, expected: torch.dtype, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    monkeypatch.setattr(models, "_CPUINFO", cpuinfo)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto") is expected


def test_resolve_dtype_auto_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("auto") is torch.float32


# --- the real stories260k model -----------------------------------------------------------------------


def test_stories260k_tokenizer_gets_a_pad_token(stories260k: Path) -> None:
    assert AutoTokenizer.from_pretrained(stories260k).pad_token is None  # the fixture really lacks one
    tok = load_tokenizer(str(stories260k))
    assert tok.pad_token == tok.eos_token == "</s>"
    assert tok.pad_token_id == 2
    assert tok.padding_side == "right"


def test_stories260k_greedy_generation_matches_llama2c(stories260k: Path) -> None:
    reference = json.loads((stories260k / "llama2c_reference.json").read_text())["greedy_generation"][0]
    tok = load_tokenizer(str(stories260k))
    model = load_model(str(stories260k), dtype="fp32", tokenizer=tok)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.pad_token_id == tok.pad_token_id == 2
    assert count_parameters(model) == (260_032, 260_032)  # tied embeddings count once

    ids = tok(reference["prompt"], return_tensors="pt").input_ids
    assert ids[0].tolist() == reference["prompt_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False)
    assert out[0, ids.shape[1] :].tolist() == reference["generated_ids"][:10]


def test_load_model_without_tokenizer_pads_with_eos(stories260k: Path) -> None:
    model = load_model(str(stories260k), dtype="fp32")
    assert model.config.pad_token_id == model.config.eos_token_id == 2
    assert model.generation_config.pad_token_id == 2


def test_load_config_reads_no_weights(stories260k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", _forbidden)
    config = load_config(str(stories260k))
    assert (config.model_type, config.num_hidden_layers, config.vocab_size) == ("llama", 5, 512)


def _forbidden(*args: object, **kwargs: object) -> None:
    raise AssertionError("weights must not be loaded")


# --- sources, offline hub, remote code ------------------------------------------------------------------


@pytest.mark.parametrize("loader", [load_model, load_tokenizer, load_config])
def test_hub_id_while_offline_fails_fast_with_user_error(loader, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(UserError, match=r"'tunesmith-test/no-such-model' is not a local folder and the hub is offline"):
        loader("tunesmith-test/no-such-model")
    assert time.monotonic() - start < 5


def test_hub_id_with_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_hub_offline", lambda: False)
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    with pytest.raises(UserError, match="not a local folder and the hub can't be reached"):
        load_model("tunesmith-test/no-such-model")


@pytest.mark.parametrize("path", ["./no/such/folder", "/no/such/folder", "runs/a/b"])
def test_missing_folder_names_the_path(path: str) -> None:
    with pytest.raises(UserError, match=f"'{path}' does not exist"):
        load_model(path)


def test_bad_folders_are_user_errors(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(UserError, match="is a file"):
        load_model(str(weights))
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match="no config.json.*adapter"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "lama"}))
    with pytest.raises(UserError, match="did you mean 'llama'"):
        load_config(str(tmp_path))


def test_a_run_folder_given_as_a_model_says_where_its_weights_are(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_FILE).write_text("{}")
    with pytest.raises(UserError, match="is a tunesmith run folder, not a model; use .*model"):
        load_model(str(run))


def test_trust_remote_code_is_false_unless_asked(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("trust_remote_code"))
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_model(str(tiny_llama_dir), dtype="fp32")
    assert seen == [False]


def test_folder_with_auto_map_loads_builtin_class_or_refuses(tmp_path: Path) -> None:
    folder = save_tiny("llama", tmp_path / "m", vocab_size=VOCAB)
    config = json.loads((folder / "config.json").read_text())
    # The module does not exist: running the repository's code would fail, the built-in class must not.
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    assert type(load_model(str(folder), dtype="fp32")).__name__ == "LlamaForCausalLM"

    config["model_type"] = "evil"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="trust_remote_code"):
        load_model(str(folder))


def test_load_model_option_mistakes(tiny_llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="did you mean 'nf4'"):
        load_model(str(tiny_llama_dir), quantization="4bit")
    with pytest.raises(UserError, match="did you mean 'sdpa'"):
        load_model(str(tiny_llama_dir), attn_implementation="spda")
    with pytest.raises(UserError, match="'eager'"):
        load_model(str(save_tiny("gemma2", tmp_path / "g2", vocab_size=VOCAB)), attn_implementation="sdpa")


# --- quantization and parameter counts ----------------------------------------------------------------


def _weight_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_nf4_loads_on_cpu_smaller_with_same_parameter_count(tiny_llama_dir: Path) -> None:
    full = load_model(str(tiny_llama_dir), dtype="fp32")
    nf4 = load_model(str(tiny_llama_dir), dtype="fp32", quantization="nf4")
    q_proj = nf4.model.layers[0].self_attn.q_proj.weight
    assert type(q_proj).__name__ == "Params4bit"
    assert q_proj.quant_state.quant_type == "nf4" and q_proj.quant_state.nested  # double quantization
    assert q_proj.numel() * 2 == HIDDEN * HIDDEN  # packed: two 4-bit values per byte
    assert count_parameters(nf4)[1] == count_parameters(full)[1]
    assert _weight_bytes(nf4) < _weight_bytes(full)
    ids = torch.tensor([[BOS_ID, 10, 20, 30]])
    with torch.no_grad():
        logits = nf4(ids).logits
    assert logits.shape == (1, 4, VOCAB) and torch.isfinite(logits).all()


def test_int8_loads_on_cpu(tiny_llama_dir: Path) -> None:
    model = load_model(str(tiny_llama_dir), dtype="fp32", quantization="int8")
    assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.int8
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[BOS_ID, 10, 20]])).logits).all()


def test_count_parameters_splits_trainable_and_counts_tied_once() -> None:
    model = tiny_model("llama", VOCAB)
    _, total = count_parameters(model)
    model.get_input_embeddings().weight.requires_grad_(False)
    assert count_parameters(model) == (total - VOCAB * HIDDEN, total)
    tied = tiny_model("llama", VOCAB, tie_word_embeddings=True)
    assert count_parameters(tied)[1] == total - VOCAB * HIDDEN
