"""What defines an adapter kind: one record per `adapter:` value, holding every fact the rest of tunesmith
asks about it (how it is built, saved, merged, served, planned), so no module branches on a kind's name.

Each kind is one module under `tunesmith/adapters/kinds/` holding its `Adapter` record (light: the recipe
schema imports it, so torch and PEFT are imported only inside the functions a record points to);
`tunesmith/adapters/kinds/__init__.py` registers each record in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunesmith.plan.shape import ModelShape
    from tunesmith.recipe.spec import AdapterArgs


class Serving(Enum):
    """How `tunesmith serve` runs a kind's trained weights."""

    MODEL = "a standalone model folder, served like any base"
    PEFT_MIXED = "a named adapter on its base's shared PeftModel; its rows batch with the base's and other such adapters'"
    PEFT_ALONE = "a named adapter on its base's shared PeftModel, switched on for batches of its own rows only"
    OWN_MODEL = "its own copy of the base with the adapter attached; batches of its own rows, through generate()"
    STEPWISE = "its own copy of the base, decoded token by token through forward(), batching prompts of one length"
    """serve/engine.py's `_decode_stepwise`: PEFT 0.21's `generate` under transformers 5 drops a prefix-tuning
    prefix altogether and lets prompt tuning drift from its own forward after a few tokens (measured on tiny
    trained adapters: tests/test_serve_kinds.py), so these run the forward the adapter was trained with; PEFT
    ignores position ids under virtual tokens, so a left-padded row would read shifted positions."""

    @property
    def shares_base(self) -> bool:
        """Loaded into the base's one PeftModel (PEFT's named adapters), not into a fresh copy of the base."""
        return self in (Serving.PEFT_MIXED, Serving.PEFT_ALONE)


class Combination(Enum):
    """How `tunesmith merge RUN RUN ...` combines several runs of one kind (ship/combine.py)."""

    LORA_FACTORS = "PEFT's add_weighted_adapter on the runs' LoRA A and B matrices: one LoRA adapter"
    WEIGHT_DELTAS = "PEFT's merge utilities on each run's weights minus the base's (task vectors): one model"


@dataclass(frozen=True)
class MemoryTerms:
    """What the memory model (plan/memory.py) needs to know of a kind."""

    parameters: Callable[[ModelShape, int], int]
    """The adapter's own parameter count for a model shape and LoRA rank `r` (others approximated)."""
    keeps_linear_inputs: bool = False
    """PEFT keeps each wrapped linear's dropped-out input (and mask) for backward (LoRA family)."""
    note: str = ""
    """What switching to this kind saves, in a few words: `plan` quotes it when it suggests the switch."""
    lighter: tuple[str, ...] = ()
    """Kinds `plan` suggests when this one does not fit, cheapest in quality first."""


@dataclass(frozen=True)
class Adapter:
    """One `adapter:` value of the recipe. A kind is PEFT's (it has `peft_config`) or tunesmith's own (it has
    `wrap`, and `save`/`load` when it writes a folder of its own format)."""

    name: str
    summary: str
    """One line for the docs: what the kind trains."""
    memory: MemoryTerms
    serving: Serving
    peft_config: Callable[[Any, AdapterArgs], Any] | None = None
    """(base model, adapter_args) -> the PEFT config to wrap the base with; None: not a PEFT method."""
    wrap: Callable[[Any, AdapterArgs], Any] | None = None
    """(base model, adapter_args) -> the model to train, for kinds that are not PEFT's."""
    after_wrap: Callable[[Any], None] | None = None
    """Run on the PeftModel right after wrapping (e.g. a better start than PEFT's)."""
    after_load: Callable[[Any], None] | None = None
    """Run on the PeftModel loaded back from disk, before inference."""
    saved_as: Callable[[dict[str, Any]], bool] | None = None
    """Whether a saved adapter_config.json is this kind's; None: the kind is never read back from a folder
    (full writes a model, QLoRA's folder is a LoRA folder)."""
    config_file: str = "adapter_config.json"
    """The file in the adapter folder that names the kind and the base model."""
    save: Callable[[Any, Path], None] | None = None
    """(model, folder) for kinds with their own format; None: the model's save_pretrained."""
    load: Callable[[Any, Path], Any] | None = None
    """(base model, folder) -> adapted model, for kinds with their own format; None: PeftModel.from_pretrained."""
    trains_base: bool = False
    """Every base weight trains (fp32 masters): a standalone model is saved, and no adapter exists."""
    base_quantization: str | None = None
    """How the frozen base is loaded for training (models/load.py), e.g. "nf4"; None: the recipe's dtype."""
    merges: bool = False
    """The update is linear in existing weights, so `tunesmith merge` can fold it into the base."""
    merge_refusal: str = ""
    """Why it cannot be merged, for kinds that have an adapter and do not merge."""
    combination: Combination | None = None
    """How several runs of this kind merge into one (`tunesmith merge A B --method ...`); None: they cannot."""
    combine_refusal: str = ""
    """Why several runs of this kind cannot be merged into one, for kinds whose `combination` is None."""
    vllm_refusal: str | None = None
    """Why vLLM cannot serve it; None where vLLM serves it (LoRA through --lora-modules, full as a model)."""
    prompt_learning: bool = False
    """It adds virtual tokens in front of every sequence: unpacked batches, full logits, stepwise decoding."""
    reads_target_modules: bool = False
    """It wraps the modules adapter_args.target_modules names (checked against the model before loading)."""
    checkpointing: bool = True
    """It trains under activation checkpointing."""
    reference_by_disabling: bool = True
    """Preference methods get their frozen reference by switching the adapter off (no second copy of weights)."""
    runs_sharded: bool = False
    """fsdp2 and ZeRO runs are supported with it."""
    fused_layers: bool = False
    """Its layers can run fused with the MLP (speedups/lora_fused.py)."""
    reads_pictures: bool = False
    """It trains and serves vision-language models (vision/adapt.py): it changes weights of the language model,
    whose forward places each picture's features at its image tokens as the base's does. Prompt learning does
    not qualify: PEFT feeds its virtual tokens as embeddings without ids or as a pre-filled cache, which
    Qwen2-VL's multimodal positions (`mm_token_type_ids`, one per real token) do not count (prefix tuning
    fails with an IndexError, prompt tuning shifts every image token's 3-D position); IA3 and bottleneck look
    for decoder layers at the top of a text model."""

    @property
    def is_peft(self) -> bool:
        return self.peft_config is not None
