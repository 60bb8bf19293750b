"""The LoRA family: `lora` (low-rank updates on `target_modules`), `qlora` (LoRA on a frozen 4-bit NF4 base,
double quantization) and `dora` (LoRA with a learned per-output magnitude, weight-decomposed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.adapters.unit import Adapter, Combination, MemoryTerms, Serving

if TYPE_CHECKING:
    from tunesmith.plan.shape import ModelShape
    from tunesmith.recipe.spec import AdapterArgs


def _lora_config(dora: bool) -> Any:
    def build(model: Any, args: AdapterArgs) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=args.dropout,
                          target_modules=args.target_modules, use_dora=dora, task_type="CAUSAL_LM")

    return build


def _saved_lora(dora: bool) -> Any:
    return lambda config: config.get("peft_type") == "LORA" and bool(config.get("use_dora")) == dora


def _dora_parameters(shape: ModelShape, r: int) -> int:
    """LoRA's, plus one magnitude per output feature of every wrapped linear."""
    return shape.lora_params(r) + shape.layers * sum(out for _, out in shape.linear_shapes())


_LORA_MEMORY = MemoryTerms(parameters=lambda shape, r: shape.lora_params(r), keeps_linear_inputs=True,
                           note="frozen bf16 base, under 1% trained", lighter=("qlora",))

LORA = Adapter(
    "lora", "low-rank updates on target_modules", _LORA_MEMORY, Serving.PEFT_MIXED,
    peft_config=_lora_config(dora=False), saved_as=_saved_lora(dora=False), reads_target_modules=True, merges=True,
    reads_pictures=True, runs_sharded=True, fused_layers=True, combination=Combination.LORA_FACTORS,
)
QLORA = Adapter(
    "qlora", "LoRA on a frozen 4-bit NF4 base (double quantization), computing in the recipe's dtype",
    MemoryTerms(parameters=lambda shape, r: shape.lora_params(r), keeps_linear_inputs=True, note="4-bit NF4 base"),
    Serving.PEFT_MIXED, peft_config=_lora_config(dora=False), base_quantization="nf4", reads_target_modules=True,
    reads_pictures=True, merges=True, combination=Combination.LORA_FACTORS,
)
DORA = Adapter(
    "dora", "LoRA with a learned per-output magnitude (weight-decomposed)",
    MemoryTerms(parameters=_dora_parameters, keeps_linear_inputs=True, lighter=("qlora",)),
    Serving.PEFT_ALONE, peft_config=_lora_config(dora=True), saved_as=_saved_lora(dora=True),
    reads_target_modules=True, reads_pictures=True, merges=True,
    combine_refusal="PEFT's add_weighted_adapter combines LoRA's A and B matrices but not DoRA's learned magnitudes "
    "(the merged adapter would silently take the base's); merge each DoRA run into the base on its own instead",
    vllm_refusal="vLLM does not serve DoRA adapters (vllm-project/vllm issue 10849)",
)
