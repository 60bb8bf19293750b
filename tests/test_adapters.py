"""Every adapter method x several model families, through the real training loop on tiny random models.

For each pair: a few optimizer steps, then (1) only the adapter's parameters moved and the base weights are
bit-identical (all weights move for `full`), (2) the trainable count recorded in run.json equals the count
worked out from the base's shapes, (3) the saved adapter, put on a freshly loaded base, gives the trained
model's logits. Plus the unit facts behind them: bottleneck adapters start as the identity, prompt tuning's
logits line up with the inputs, prefix/prompt tuning cannot be packed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.pytorch_utils import Conv1D

from tunesmith.adapters.bottleneck import CONFIG_FILE, WEIGHTS_FILE, add_bottleneck, decoder_layers, load_bottleneck
from tunesmith.adapters.build import apply_adapter, load_adapter
from tunesmith.data.packing import collate_packed, collate_padded, pack
from tunesmith.data.types import Sample
from tunesmith.errors import UserError
from tunesmith.models.load import count_parameters, load_model
from tunesmith.recipe.registry import ADAPTERS
from tunesmith.recipe.spec import AdapterArgs, Recipe, recipe_from_dict
from tunesmith.testing.demo import BASE_SKILLS, make_rows
from tunesmith.testing.tiny import save_tiny, tiny_model
from tunesmith.train.loop import build_trainer, train, trainer_run

FAMILIES = ("llama", "qwen2", "gpt2", "gpt_neox", "phi3", "gemma")
R, VIRTUAL, BOTTLENECK = 4, 5, 8
FAST = {  # one family per adapter in the default run, so each family and each adapter is covered quickly
    "lora": "llama", "qlora": "llama", "dora": "gpt2", "ia3": "gpt_neox",
    "prefix": "phi3", "prompt": "qwen2", "bottleneck": "gemma", "full": "gpt2",
}
TABLE = [
    pytest.param(adapter, family, marks=() if FAST[adapter] == family else pytest.mark.slow, id=f"{adapter}-{family}")
    for adapter in ADAPTERS for family in FAMILIES
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    rows = make_rows(48, BASE_SKILLS, seed=5)
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def base_dir(workdir: Path, family: str) -> Path:
    folder = workdir / f"base-{family}"
    if not folder.is_dir():
        save_tiny(family, folder, vocab_size=300)
    return folder


def make_recipe(workdir: Path, family: str, adapter: str, name: str) -> Recipe:
    return recipe_from_dict({
        "name": name, "model": str(base_dir(workdir, family)), "adapter": adapter, "output": str(workdir / "runs"),
        "data": {"train": str(workdir / "rows.jsonl"), "eval": 0.0, "template": "plain"},
        "train": {"lr": 1e-2, "max_steps": 3, "batch_size": 4, "max_seq_len": 64, "mixed_precision": "no",
                  "warmup_ratio": 0.0, "seed": 0},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"r": R, "alpha": 2 * R, "dropout": 0.0, "virtual_tokens": VIRTUAL,
                         "bottleneck_size": BOTTLENECK},
    })


def linear_layers(model: torch.nn.Module) -> list[tuple[str, int, int]]:
    """(name, in, out) of every linear layer but the output head: what `all-linear` targets."""
    found = []
    for name, module in model.named_modules():
        if name.endswith("lm_head"):
            continue
        if isinstance(module, torch.nn.Linear):
            found.append((name, module.in_features, module.out_features))
        elif isinstance(module, Conv1D):
            found.append((name, module.weight.shape[0], module.nf))
    return found


def expected_trainable(base: torch.nn.Module, adapter: str) -> int:
    """The adapter's parameter count, from the base's shapes and the method's definition."""
    text = base.config.get_text_config()
    hidden, layers = text.hidden_size, text.num_hidden_layers
    linears = linear_layers(base)
    if adapter in ("lora", "qlora"):
        return sum(R * (i + o) for _, i, o in linears)
    if adapter == "dora":  # LoRA plus one magnitude per output channel
        return sum(R * (i + o) + o for _, i, o in linears)
    if adapter == "ia3":  # one scale per output channel; per input channel of the FFN's down-projection
        return sum(i if (i != hidden and o == hidden and ".mlp." in n + ".") else o for n, i, o in linears)
    if adapter == "prefix":  # a key and a value vector per virtual token per layer, at the KV width
        heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        return VIRTUAL * layers * 2 * heads * (hidden // text.num_attention_heads)
    if adapter == "prompt":
        return VIRTUAL * hidden
    if adapter == "bottleneck":  # down (weight + bias) and up (weight + bias), twice per layer
        return layers * 2 * (2 * hidden * BOTTLENECK + BOTTLENECK + hidden)
    return count_parameters(base)[1]


@pytest.mark.parametrize("adapter,family", TABLE)
def test_adapter_trains_only_its_parameters_and_reloads(workdir: Path, adapter: str, family: str) -> None:
    recipe = make_recipe(workdir, family, adapter, f"{adapter}-{family}")
    quantization = "nf4" if adapter == "qlora" else None
    fresh = load_model(recipe.model, dtype="fp32", quantization=quantization)
    base_state = {name: p.detach().clone() for name, p in fresh.named_parameters()}
    trainer = build_trainer(recipe, overwrite=True)
    model = trainer.model
    if adapter == "qlora":  # the frozen base really is 4-bit NF4
        assert any(type(p).__name__ == "Params4bit" for p in model.parameters())
    start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    trainer_run(trainer)

    trained = dict(model.named_parameters())
    moved = [name for name, before in start.items() if not torch.equal(trained[name], before)]
    assert sorted(moved) == sorted(start), f"adapter tensors that never moved: {sorted(set(start) - set(moved))[:3]}"
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    frozen = {n.replace(".base_layer.", "."): p for n, p in inner.named_parameters() if not p.requires_grad}
    if adapter == "full":
        assert not frozen and len(start) == len(base_state)
    else:
        assert frozen.keys() == base_state.keys()
        for name, p in frozen.items():
            assert torch.equal(p, base_state[name]), f"base weight {name} changed"

    saved = {p.name for p in (recipe.run_dir / "adapter").iterdir()} if adapter != "full" else set()
    if adapter == "bottleneck":
        assert {CONFIG_FILE, WEIGHTS_FILE} <= saved and "adapter_config.json" not in saved
    elif adapter != "full":  # the standard PEFT folder
        assert {"adapter_config.json", "adapter_model.safetensors"} <= saved
    info = json.loads((recipe.run_dir / "run.json").read_text())["state"]
    plain = load_model(recipe.model, dtype="fp32")
    assert info["trainable_params"] == expected_trainable(plain, adapter)
    base_total = count_parameters(plain)[1]
    assert info["total_params"] == base_total + (0 if adapter == "full" else info["trainable_params"])

    ids = torch.tensor([[5, 17, 42, 99, 7, 250, 3, 11], [60, 61, 62, 63, 64, 65, 66, 67]])
    model.eval()
    with torch.no_grad():
        want = model(input_ids=ids, use_cache=False).logits
        if adapter == "full":
            reloaded = AutoModelForCausalLM.from_pretrained(recipe.run_dir / "model", dtype=torch.float32)
        else:
            reloaded = load_adapter(load_model(recipe.model, dtype="fp32", quantization=quantization),
                                    recipe.run_dir / "adapter")
        got = reloaded(input_ids=ids, use_cache=False).logits
    assert got.shape == want.shape == (2, 8, plain.config.vocab_size)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_bottleneck_starts_as_the_identity_and_sits_after_attention_and_mlp(family: str) -> None:
    base = tiny_model(family, 300)
    adapted = add_bottleneck(tiny_model(family, 300), size=BOTTLENECK)
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    torch.testing.assert_close(adapted(ids).logits, base(ids).logits, rtol=0, atol=0)
    layers = decoder_layers(adapted)
    assert len(layers) == base.config.get_text_config().num_hidden_layers
    for site in ("attention", "mlp"):  # each site on its own changes the output once `up` is non-zero
        probe = add_bottleneck(tiny_model(family, 300), size=BOTTLENECK)
        with torch.no_grad():
            getattr(decoder_layers(probe)[0], f"bottleneck_{site}").up.bias.fill_(0.5)
        assert not torch.allclose(probe(ids).logits, base(ids).logits)
    assert all(p.requires_grad == ("bottleneck_" in n) for n, p in adapted.named_parameters())


def test_load_bottleneck_refuses_another_architecture(tmp_path: Path) -> None:
    from tunesmith.adapters.bottleneck import save_bottleneck

    save_bottleneck(add_bottleneck(tiny_model("llama", 300), size=BOTTLENECK), tmp_path)
    with pytest.raises(UserError, match="hidden size 64 and 2 layers"):
        load_bottleneck(tiny_model("llama", 300, hidden=32), tmp_path)
    with pytest.raises(UserError, match="no bottleneck adapter"):
        load_bottleneck(tiny_model("llama", 300), tmp_path / "missing")


def test_ia3_scales_the_input_of_ffn_down_projections_only() -> None:
    args = AdapterArgs(target_modules=["k_proj", "v_proj", "down_proj"])
    model = apply_adapter(tiny_model("llama", 300), "ia3", args)
    vectors = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    per_layer = {name.split(".")[-3]: size for name, size in vectors.items() if ".layers.0." in name}
    assert per_layer == {"k_proj": 32, "v_proj": 32, "down_proj": 128}  # kv width 32; intermediate 128


@pytest.mark.parametrize("adapter", ["prefix", "prompt"])
def test_virtual_tokens_leak_across_packed_samples_so_recipes_unpack(adapter: str) -> None:
    """Why prefix/prompt tuning train unpacked: measured, packed rows let the second sample see the first."""
    model = apply_adapter(tiny_model("llama", 300), adapter, AdapterArgs(virtual_tokens=VIRTUAL))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    a, b = Sample(list(range(5, 15)), list(range(5, 15))), Sample(list(range(20, 26)), list(range(20, 26)))
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits[0] for s in (a, b)]
        packed = {k: v for k, v in collate_packed(pack([a, b], 64)).items() if k != "labels"}
        row = model(**packed, use_cache=False).logits[0]
        padded = {k: v for k, v in collate_padded([a, b], 0).items() if k != "labels"}
        rows = model(**padded, use_cache=False).logits
    assert packed["input_ids"][0].tolist() == a.input_ids + b.input_ids  # longest first: a, then b
    torch.testing.assert_close(row[:10], alone[0], rtol=0, atol=1e-5)  # the first sample is unaffected...
    assert (row[10:] - alone[1]).abs().max() > 1e-2  # ...the second attends to the first
    torch.testing.assert_close(rows[0, :10], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(rows[1, :6], alone[1], rtol=0, atol=1e-5)

    recipe = recipe_from_dict({"name": "x", "model": "m", "adapter": adapter, "data": {"train": "t"},
                               "train": {"packing": True}})
    assert recipe.train.packing is False
    assert any("packing is off" in note for note in recipe.advice())


def test_prefix_starts_as_the_base_reading_real_tokens_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefix tuning's prefix is initialised with the keys/values of random vocabulary tokens, not noise."""
    drawn: list[torch.Tensor] = []
    randint = torch.randint

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        drawn.append(randint(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(torch, "randint", spy)
    model = apply_adapter(tiny_model("qwen2", 300), "prefix", AdapterArgs(virtual_tokens=VIRTUAL))
    monkeypatch.undo()
    tokens, ids = drawn[-1], torch.tensor([[7, 8, 9, 10, 11, 12]])
    assert tokens.shape == (1, VIRTUAL)
    with torch.no_grad():
        want = tiny_model("qwen2", 300)(input_ids=torch.cat([tokens, ids], 1), use_cache=False).logits[:, VIRTUAL:]
        got = model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_qlora_evaluates_widths_bitsandbytes_cannot_repack(tmp_path: Path) -> None:
    """An MLP 172 wide (stories260k's) is no multiple of 32: eval must neither crash nor change the numerics."""
    folder = save_tiny("llama", tmp_path / "base", vocab_size=300, intermediate=172)
    model = apply_adapter(load_model(str(folder), dtype="fp32", quantization="nf4"), "qlora", AdapterArgs(dropout=0.0))
    ids = torch.tensor([[5, 17, 42, 99, 7, 250]])
    model.train()
    training = model(input_ids=ids, use_cache=False).logits.detach()
    model.eval()
    with torch.no_grad():
        evaluation = model(input_ids=ids, use_cache=False).logits
    assert torch.equal(evaluation, training)


REAL_LR = {"lora": 3e-3, "qlora": 3e-3, "dora": 3e-3, "ia3": 3e-2, "prefix": 3e-2, "prompt": 3e-2, "bottleneck": 3e-3}


@pytest.mark.slow
@pytest.mark.parametrize("adapter", list(REAL_LR))
def test_every_adapter_lowers_held_out_loss_on_stories260k(stories260k: Path, shared_data: Path, tmp_path: Path,
                                                           adapter: str) -> None:
    """The same 200 Alpaca rows (20 held out), 30 steps, each method at a learning rate that suits it."""
    recipe = recipe_from_dict({
        "name": adapter, "model": str(stories260k), "adapter": adapter, "output": str(tmp_path),
        "data": {"train": str(shared_data / "alpaca_1k.jsonl"), "max_rows": 200, "eval": 0.1, "template": "plain"},
        "train": {"lr": REAL_LR[adapter], "max_steps": 30, "batch_size": 4, "max_seq_len": 128,
                  "mixed_precision": "no", "warmup_ratio": 0.1},
        "model_options": {"dtype": "fp32"},
        "adapter_args": {"virtual_tokens": 10, "bottleneck_size": 32},
    })
    info = json.loads((train(recipe).path / "run.json").read_text())
    before, after = info["final"]["eval_loss_before"], info["final"]["eval_loss"]
    share = 100 * info["state"]["trainable_params"] / info["state"]["total_params"]
    print(f"{adapter}: held-out loss {before:.4f} -> {after:.4f} ({share:.2f}% trainable)")
    assert after < before - 0.1
