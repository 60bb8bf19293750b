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

from tunesmith.adapters import apply_adapter, load_adapter
from tunesmith.bottleneck import CONFIG_FILE, WEIGHTS_FILE, add_bottleneck, decoder_layers, load_bottleneck
from tunesmith.data.packing import collate_packed, collate_padded, pack
from tunesmith.data.types import Sample
from tunesmith.demo import BASE_SKILLS, make_rows
from tunesmith.errors import UserError
from tunesmith.models import count_parameters, load_model
from tunesmith.recipe import AdapterArgs, Recipe, recipe_from_dict
from tunesmith.registry import ADAPTERS
from tunesmith.tiny import save_tiny, tiny_model
from tunesmith.train.loop import build_trainer, trainer_run

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
