"""GPU speed switches on a CPU machine: what `auto` picks, what an explicit request does without the GPU, and
that packed batches stay isolated under transformers' flash-attention dispatch once flattened."""

from __future__ import annotations

import json
import platform
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers.modeling_flash_attention_utils as fa_utils
from transformers import BloomConfig, BloomForCausalLM

from tunesmith.adapters.build import apply_adapter
from tunesmith.data.packing import collate_flat, collate_packed, pack
from tunesmith.data.types import IGNORE_INDEX, Sample
from tunesmith.errors import UserError
from tunesmith.models.load import load_model
from tunesmith.recipe.spec import AdapterArgs, recipe_from_dict
from tunesmith.speedups import kernels
from tunesmith.speedups.kernels import (
    KernelChoice,
    apply_kernels,
    attention_dtype,
    needs_flat_batches,
    resolve_attn_implementation,
)
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny, tiny_model
from tunesmith.train.batches import plan_batches
from tunesmith.train.loop import train

VOCAB = 300
NO_GPU = "model_options.kernels: liger needs a CUDA GPU and `pip install liger-kernel`; running without it"


@pytest.fixture
def gpu_box(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend a CUDA GPU is present with every optional package installed: probes the decisions only."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kernels, "installed", lambda module: True)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("k") / "llama", vocab_size=VOCAB)


# --- attention: auto and explicit requests ------------------------------------------------------------


def test_auto_attention_without_cuda_is_the_models_own_default(tiny_llama: Path, tmp_path: Path) -> None:
    assert not torch.cuda.is_available()
    assert resolve_attn_implementation("auto", torch.bfloat16) is None
    assert load_model(str(tiny_llama), dtype="fp32", attn_implementation="auto").config._attn_implementation == "sdpa"
    gemma2 = save_tiny("gemma2", tmp_path / "g2", vocab_size=VOCAB)  # no sdpa path: "auto" still loads it
    assert load_model(str(gemma2), dtype="fp32", attn_implementation="auto").config._attn_implementation == "eager"


def test_auto_attention_picks_flash_only_with_cuda_package_and_half_precision(
    gpu_box: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_attn_implementation("auto", torch.bfloat16) == "flash_attention_2"
    assert resolve_attn_implementation("auto", torch.float32) is None
    # Full fine-tuning keeps fp32 weights and computes under bf16 autocast: flash attention can run.
    assert resolve_attn_implementation("auto", attention_dtype(torch.float32, "bf16")) == "flash_attention_2"
    assert attention_dtype(torch.float32, "no") == torch.float32
    monkeypatch.setattr(kernels, "installed", lambda module: module != "flash_attn")
    assert resolve_attn_implementation("auto", torch.bfloat16) is None


def test_explicit_flash_attention_that_cannot_run_is_a_user_error(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="flash_attention_2 needs a CUDA GPU.*attn_implementation: auto"):
        load_model(str(tiny_llama), dtype="bf16", attn_implementation="flash_attention_2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(kernels, "installed", lambda module: module != "flash_attn")
    with pytest.raises(UserError, match=r"needs the flash_attn package \(pip install flash-attn\)"):
        resolve_attn_implementation("flash_attention_2", torch.bfloat16)
    monkeypatch.setattr(kernels, "installed", lambda module: True)
    with pytest.raises(UserError, match="computes in bf16 or fp16, but this run computes in float32"):
        resolve_attn_implementation("flash_attention_2", torch.float32)
    assert resolve_attn_implementation("sdpa", torch.float32) == "sdpa"


def test_auto_falls_back_when_the_model_class_has_no_flash_path(gpu_box: None, tmp_path: Path) -> None:
    """Bloom has no flash-attention path: "auto" must still load it (with transformers' default)."""
    torch.manual_seed(0)
    BloomForCausalLM(BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    model = load_model(str(tmp_path), dtype="bf16", attn_implementation="auto")
    assert "flash" not in model.config._attn_implementation
    with pytest.raises(UserError, match="does not support attn_implementation 'flex_attention'"):
        load_model(str(tmp_path), dtype="bf16", attn_implementation="flex_attention")


def test_recipe_names_typos_in_the_speed_switches() -> None:
    base = {"name": "r", "model": "m", "data": {"train": "x.jsonl"}}
    with pytest.raises(UserError, match="did you mean 'flash_attention_2'"):
        recipe_from_dict({**base, "model_options": {"attn_implementation": "flash_attention2"}})
    with pytest.raises(UserError, match="did you mean 'liger'"):
        recipe_from_dict({**base, "model_options": {"kernels": "ligr"}})
    options = recipe_from_dict(base).model_options
    assert (options.attn_implementation, options.kernels) == ("auto", "auto")


# --- Liger kernels ----------------------------------------------------------------------------------


def test_liger_without_cuda_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("llama", VOCAB)
    monkeypatch.setattr(kernels, "installed", lambda module: False)
    assert apply_kernels(model, "liger") == KernelChoice("none", NO_GPU)
    assert apply_kernels(model, "auto") == KernelChoice("none")
    assert apply_kernels(model, "none") == KernelChoice("none")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert apply_kernels(model, "liger").note == (
        "model_options.kernels: liger needs `pip install liger-kernel`; running without it")
    with pytest.raises(UserError, match="did you mean 'liger'"):
        apply_kernels(model, "ligr")


def test_liger_patches_the_bare_model_without_the_fused_loss(gpu_box: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for liger_kernel records what we hand it; the real one needs CUDA and Triton."""
    calls: list[tuple[torch.nn.Module, dict]] = []
    patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    patch.MODEL_TYPE_TO_APPLY_LIGER_FN = {"llama": None}
    patch._apply_liger_kernel_to_instance = lambda model, **kw: calls.append((model, kw))
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", patch)

    llama = tiny_model("llama", VOCAB)
    assert apply_kernels(llama, "auto") == KernelChoice("liger")
    assert calls == [(llama, {"cross_entropy": False, "fused_linear_cross_entropy": False})]
    gpt2 = tiny_model("gpt2", VOCAB)
    assert apply_kernels(gpt2, "auto") == KernelChoice("none")
    assert apply_kernels(gpt2, "liger").note == (
        "model_options.kernels: liger has no kernels for model type 'gpt2'; running without it")
    assert len(calls) == 1


# --- packed batches under flash attention -------------------------------------------------------------


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None) -> torch.Tensor:
    """(L, heads, dim) attention; k and v may have fewer heads (GQA), as flash-attn allows."""
    out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                         is_causal=causal, scale=scale, enable_gqa=True)
    return out.transpose(0, 1)


def _flash(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **_):  # noqa: ANN001, ANN202
    """flash_attn_func's contract: (batch, L, heads, dim), each row attended on its own."""
    return torch.stack([_attend(q[b], k[b], v[b], causal, softmax_scale) for b in range(q.shape[0])])


def _flash_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,  # noqa: ANN001, ANN202
                  dropout_p=0.0, softmax_scale=None, causal=False, **_):
    """flash_attn_varlen_func's contract: (total, heads, dim), each cu_seqlens segment attended on its own."""
    bounds = cu_seqlens_q.tolist()
    return torch.cat([_attend(q[a:b], k[a:b], v[a:b], causal, softmax_scale) for a, b in zip(bounds, bounds[1:])])


@pytest.fixture
def reference_flash(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers' own flash-attention dispatch (`_flash_attention_forward`), over reference kernels in torch."""
    functions = (_flash, _flash_varlen, None, fa_utils._pad_input, fa_utils._unpad_input)
    processing = (fa_utils._lazy_define_process_function(_flash_varlen), dict)
    monkeypatch.setattr(fa_utils, "lazy_import_flash_attention", lambda *a, **k: (functions, processing))


def _packed_rows() -> list:
    g = torch.Generator().manual_seed(0)
    samples = []
    for n in (20, 13, 9, 30, 7, 17):
        ids = torch.randint(4, VOCAB, (n,), generator=g).tolist()
        samples.append(Sample(ids, [IGNORE_INDEX] * 3 + ids[3:]))
    rows = pack(samples, 40)
    assert len(rows) == 3 and all(len(row.lengths) == 2 for row in rows)
    return rows


def _forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits


def test_flash_attention_needs_flat_batches_to_keep_packed_samples_apart(reference_flash: None) -> None:
    model = tiny_model("llama", VOCAB)
    rows = _packed_rows()
    packed, flat = collate_packed(rows), collate_flat(rows)
    isolated = torch.cat([_forward(model, packed)[r, :len(row.input_ids)] for r, row in enumerate(rows)])  # sdpa
    model.config._attn_implementation = "flash_attention_2"
    leaky = _forward(model, packed)  # 3 rows: transformers calls the plain causal kernel
    leaky = torch.cat([leaky[r, :len(row.input_ids)] for r, row in enumerate(rows)])
    assert (leaky - isolated).abs().max() > 0.1
    torch.testing.assert_close(_forward(model, flat)[0], isolated, atol=1e-5, rtol=0)


def test_flat_batches_follow_the_attention_the_model_runs() -> None:
    model = tiny_model("llama", VOCAB)
    assert not needs_flat_batches(model)
    model.config._attn_implementation = "flash_attention_2"
    assert needs_flat_batches(model)
    assert needs_flat_batches(apply_adapter(model, "lora", AdapterArgs()))  # PEFT answers with its base's config


def test_flat_batch_gives_the_same_loss_as_the_packed_batch() -> None:
    model = tiny_model("llama", VOCAB)
    rows = _packed_rows()
    packed, flat = collate_packed(rows), collate_flat(rows)
    assert flat["input_ids"].shape == (1, sum(len(row.input_ids) for row in rows))
    assert (flat["labels"] != IGNORE_INDEX).sum() == (packed["labels"] != IGNORE_INDEX).sum()
    with torch.no_grad():
        losses = [model(**batch, use_cache=False).loss.item() for batch in (packed, flat)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)

    samples = [Sample(list(row.input_ids), list(row.labels)) for row in rows]
    plan = plan_batches(samples * 4, batch_size=3, accum=1, epochs=1, max_steps=None, max_seq_len=64,
                        packing=True, pad_id=0, seed=0, flat=True)
    assert all(batch["input_ids"].shape[0] == 1 for batch in plan.step_batches(0))


# --- end to end ---------------------------------------------------------------------------------------


def _recipe(tiny_llama: Path, tmp_path: Path, kernels_choice: str) -> object:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(40, BASE_SKILLS, seed=3)))
    return recipe_from_dict({
        "name": f"k-{kernels_choice}", "model": str(tiny_llama), "output": str(tmp_path / "runs"),
        "data": {"train": str(data), "eval": 0.1, "template": "plain"},
        "train": {"lr": 1e-3, "max_steps": 1, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no"},
        "model_options": {"dtype": "fp32", "kernels": kernels_choice},
    })


def test_a_tiny_llama_trains_with_auto_kernels_and_records_what_ran(tiny_llama: Path, tmp_path: Path, capsys) -> None:
    run = train(_recipe(tiny_llama, tmp_path, "auto")).path
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["recipe"]["model_options"]["kernels"] == "auto"
    # auto attention on CPU: sdpa, one packed sample at a time (speedups/packed_attention.py)
    assert (info["state"]["attn_implementation"], info["state"]["kernels"]) == ("sdpa_per_sample", "none")
    assert info["state"]["fused_lora_layers"] == 14  # q, k, v, o, gate, up, down of 2 layers (speedups/lora_fused.py)
    assert info["state"]["host_memory_kept"] is (platform.libc_ver()[0] == "glibc")  # speedups/host_memory.py
    err = " ".join(capsys.readouterr().err.split())
    assert "attention sdpa_per_sample, kernels none, 14 LoRA layers fused" in err and "liger" not in err

    run = train(_recipe(tiny_llama, tmp_path, "none")).path
    state = json.loads((run / "run.json").read_text())["state"]
    assert state["fused_lora_layers"] == 0 and "host_memory_kept" not in state
    capsys.readouterr()

    run = train(_recipe(tiny_llama, tmp_path, "liger")).path
    assert json.loads((run / "run.json").read_text())["state"]["kernels"] == "none"
    assert capsys.readouterr().err.count("model_options.kernels: liger needs a CUDA GPU") == 1
