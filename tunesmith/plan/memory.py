"""The memory model: peak bytes of one training process, part by part, from the model's shape and the
recipe's settings. `tunesmith plan` prints it; `train.gradient_checkpointing: auto` decides with it.

Parts (per device):
* weights: trainable weights in fp32 (full fine-tuning trains fp32 masters under autocast); frozen ones in
  the recipe's dtype; QLoRA's body linears in NF4 = 4 bits + one absmax per 64 values, which double
  quantization stores in 8 bits with one fp32 constant per 256 absmax (0.127 bits/value instead of 0.5);
  PEFT's k-bit preparation keeps QLoRA's embeddings, head and norms in fp32.
* gradients: fp32, one per trainable value. optimizer: AdamW keeps two fp32 moments (8 bytes/value);
  8-bit AdamW two 8-bit moments with one fp32 scale per 2048 values (~2 bytes/value).
* adapter: the adapter's own weights (fp32), counted apart from the frozen base.
* activations: bytes kept for backward per token and layer, `activation_bytes_per_token_layer` (measured
  constants, see there); with checkpointing only each layer's input is kept, plus one layer recomputed.
* logits: the output head's (tokens x vocabulary) logits in fp32 and their gradient; the fused head holds one
  chunk of 4M logits instead; DPO holds chosen and rejected rows and the reference's logits.
* reference: a frozen copy of the weights for DPO/KTO/PPO with full fine-tuning (adapters disable themselves).
* sharding: DDP replicates everything; ZeRO-2 splits gradients and optimizer states over the processes;
  ZeRO-3 and FSDP (full shard) also split the weights, gathering one layer at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.adapters.unit import Adapter
from tunesmith.plan.shape import ModelShape

GIB = 1 << 30
MIB = 1 << 20
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
NF4_BYTES_PER_VALUE = 0.5 + 4 / 64
"""4 bits per value plus one fp32 absmax per block of 64."""
NF4_DOUBLE_QUANT_BYTES_PER_VALUE = 0.5 + 1 / 64 + 4 / (64 * 256)
"""4 bits per value; absmax in 8 bits per block of 64, plus one fp32 constant per 256 absmax."""
OPTIMIZER_BYTES = {"adamw": 8.0, "adamw8bit": 2.0 + 8 / 2048, "sgd": 0.0}
SHARDINGS = ("ddp", "fsdp", "zero2", "zero3")
FUSED_CHUNK_LOGITS = 1 << 22
"""Logits one chunk of the fused head holds (train/losses.py: about 4M values)."""
LOGIT_BYTES = 4 + 4 + 2
"""Per logit: fp32 logits, their fp32 gradient, and the half-precision matmul output under autocast."""
ACT_PER_HIDDEN = 40
ACT_PER_INTERMEDIATE = 16
"""Activation bytes per token and layer in fp32: 40 x hidden + 16 x intermediate. Counted tensor by tensor for
a Llama layer (norm inputs and outputs, q/k/v before and after rotary, attention output: ~8 hidden-wide values
of 4 bytes; post-attention norm: 2; gate, up, activation and product: 4 intermediate-wide) and checked on CPU
(bench/plan_accuracy.py: the memory checkpointing saves, per token and layer, is 0.88-1.15x this)."""
LORA_INPUT_BYTES = 5
"""PEFT's LoRA keeps, per input value of every wrapped linear, its dropped-out input (fp32) and the dropout mask."""
FUSED_LORA_INPUT_BYTES = 1
"""Fused LoRA layers (speedups/lora_fused.py) keep, per input value, only the bool dropout mask: the input itself is
the base's, already counted."""
FUSED_MLP_INTERMEDIATE = 8
"""A fused SwiGLU MLP (speedups/mlp_fused.py) keeps gate(x) and up(x), not the activation and the product: 8 of
ACT_PER_INTERMEDIATE's 16 bytes per intermediate unit."""
HALF_FACTOR = 0.85
"""Activations under bf16/fp16 autocast relative to fp32: the residual stream, norms and softmax statistics
stay fp32, so they shrink far less than half (earlier measurement, README: 95-110 x hidden in bf16 for LoRA
at width 384-640, 0.83x this count's fp32 figure)."""
FROZEN_BASE_FACTOR = 1.0
"""Adapters over a frozen base (LoRA, QLoRA, ...) peaked, on CPU, one more base layer-set of activations above
full fine-tuning, with and without checkpointing (bench/plan_accuracy.py, both model sizes, SFT and DPO);
the cause is not pinned down, the term is an empirical one, applied on CPU only (not measured on a GPU)."""
FUSED_FROZEN_BASE_FACTOR = 0.5
"""The same extra once the LoRA layers and MLPs run fused (and freed host memory is kept, speedups/host_memory.py):
half a layer-set, fitted to bench/plan_accuracy.py's eight LoRA runs (SFT and DPO, 13M and 45M, with and
without checkpointing), in-sample: it leaves them within -12% to +6%, the 13M ones low and the 45M ones high."""
OPTIMIZER_TEMP_SHARE = 0.5
"""AdamW's multi-tensor step allocates temporaries of about half the trainable fp32 bytes (measured, full)."""
CHECKPOINT_INPUT_BYTES = 4
"""With checkpointing, each layer keeps only its input: the residual stream, one fp32 value per hidden unit."""


@dataclass(frozen=True)
class TrainSetup:
    """What the estimate depends on, resolved from a recipe (plan/from_recipe.py) or given directly."""

    shape: ModelShape
    adapter: str = "lora"
    method: str = "sft"                 # the method's name, for the report (its facts are the fields below)
    sequences_per_unit: int = 1         # sequences one micro-batch item holds (a pair: 2; a group: its size)
    trains_on_samples: bool = True      # next-token loss on samples: the trained share reaches the (fused) head
    reference_forward: bool = False     # a frozen reference's forward each step (its logits, no gradient)
    weight_dtype: str = "bf16"          # dtype of frozen weights (full fine-tuning trains fp32 masters)
    half_precision: bool = True         # autocast (or half weights): activations in 2 bytes
    micro_batch: int = 1                # rows per micro-batch (DPO: pairs)
    seq_len: int = 1024
    trained_share: float = 1.0          # share of tokens that carry loss (the head runs only there)
    checkpointing: bool = False
    fused_head: bool = True
    lora_r: int = 16
    optimizer: str = "adamw"
    nproc: int = 1
    sharding: str = "ddp"
    reference_copy: bool = False        # a frozen copy of the weights (full-weight DPO/KTO/PPO)
    runtime_bytes: int = 0              # the framework's own resident memory (CUDA context or CPU runtime)
    checkpoint_bytes: int = 0           # CPU training: the checkpoint file's pages read at load stay resident
    on_cpu: bool = False                # training on the CPU (the measured CPU-only terms apply)
    fused_lora: bool = False            # LoRA layers and SwiGLU MLPs run fused (speedups/lora_fused.py, speedups/mlp_fused.py)

    @property
    def adapter_kind(self) -> Adapter:
        """The adapter's record (adapters/kinds/): its memory terms and what it trains."""
        return ADAPTER_KINDS[self.adapter]

    @property
    def rows(self) -> int:
        """Sequences in one micro-batch: preference methods forward chosen and rejected together, group
        sampling methods every completion of a prompt."""
        return self.micro_batch * self.sequences_per_unit

    @property
    def tokens(self) -> int:
        return self.rows * self.seq_len


@dataclass
class MemoryEstimate:
    """Peak bytes per device, by part; `total` is their sum."""

    parts: dict[str, int] = field(default_factory=dict)
    trainable_params: int = 0
    total_params: int = 0

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def trainable_count(s: TrainSetup) -> int:
    """Parameters that get gradients and optimizer states."""
    if s.adapter_kind.trains_base:
        return s.shape.params
    return adapter_count(s)


def adapter_count(s: TrainSetup) -> int:
    """The adapter's own parameters (LoRA-family r over all linear layers; others approximated): each kind's
    count (adapters/kinds/)."""
    return s.adapter_kind.memory.parameters(s.shape, s.lora_r)


def weight_bytes(s: TrainSetup) -> int:
    """Bytes of the base model's weights as trained (the adapter apart)."""
    shape = s.shape
    if s.adapter_kind.trains_base:
        return 4 * shape.params
    other = shape.embed_params + shape.head_params + shape.norm_params
    if s.adapter_kind.base_quantization is not None:  # NF4, the one quantization adapters train on
        return int(NF4_DOUBLE_QUANT_BYTES_PER_VALUE * shape.linear_params) + 4 * other
    return DTYPE_BYTES[s.weight_dtype] * shape.params


def base_activation_bytes(shape: ModelShape, half_precision: bool, fused_mlp: bool = False) -> float:
    """Bytes one token keeps for backward in one decoder layer of the base model (see ACT_PER_HIDDEN)."""
    intermediate = FUSED_MLP_INTERMEDIATE if fused_mlp else ACT_PER_INTERMEDIATE
    per = ACT_PER_HIDDEN * shape.hidden + intermediate * shape.intermediate
    return per * (HALF_FACTOR if half_precision else 1.0)


def adapter_input_bytes(s: TrainSetup) -> float:
    """What LoRA-family adapters add per token and layer: each wrapped linear's dropped-out input and mask
    (PEFT), or the bool mask alone (fused)."""
    if not s.adapter_kind.memory.keeps_linear_inputs:
        return 0.0
    inputs = sum(i for i, _ in s.shape.linear_shapes())
    if s.fused_lora:
        return FUSED_LORA_INPUT_BYTES * inputs
    return LORA_INPUT_BYTES * inputs * (HALF_FACTOR if s.half_precision else 1.0)


def activation_bytes(s: TrainSetup) -> int:
    """Activations a micro-batch keeps for backward: all layers', or under checkpointing each layer's input
    plus one layer's worth while it is recomputed."""
    per_layer = (base_activation_bytes(s.shape, s.half_precision, s.fused_lora) + adapter_input_bytes(s)) * s.tokens
    if not s.checkpointing:
        return int(per_layer * s.shape.layers)
    return int(CHECKPOINT_INPUT_BYTES * s.shape.hidden * s.tokens * s.shape.layers + per_layer)


def frozen_base_bytes(s: TrainSetup) -> int:
    """The empirical extra of adapters over a frozen base (FROZEN_BASE_FACTOR), on CPU where it was measured."""
    if s.adapter_kind.trains_base or not s.on_cpu:
        return 0
    factor = FUSED_FROZEN_BASE_FACTOR if s.fused_lora else FROZEN_BASE_FACTOR
    return int(factor * base_activation_bytes(s.shape, s.half_precision, s.fused_lora) * s.tokens * s.shape.layers)


def logit_bytes(s: TrainSetup) -> int:
    """The output head's logits (and their gradient) at trained positions, or one chunk when fused."""
    fused = s.fused_head and s.trains_on_samples
    positions = max(1, int(s.tokens * (s.trained_share if s.trains_on_samples else 1.0)))
    logits = min(positions * s.shape.vocab, FUSED_CHUNK_LOGITS) if fused else positions * s.shape.vocab
    return int(logits * (LOGIT_BYTES + (4 if s.reference_forward else 0)))  # the reference's: no gradient


def estimate_memory(s: TrainSetup) -> MemoryEstimate:
    """Peak bytes of one process, by part, after sharding over `s.nproc` processes."""
    trainable = trainable_count(s)
    trains_base = s.adapter_kind.trains_base
    adapter = 0 if trains_base else 4 * adapter_count(s)
    shard_states = s.nproc if s.sharding in SHARDINGS[1:] else 1
    shard_weights = s.nproc if s.sharding in ("fsdp", "zero3") else 1
    weights = weight_bytes(s)
    parts = {
        "weights": weights // shard_weights,
        "adapter": adapter // shard_weights,
        "gradients": 4 * trainable // shard_states,
        "optimizer": int(OPTIMIZER_BYTES[s.optimizer] * trainable) // shard_states,
        "activations": activation_bytes(s),
        "frozen-base activations": frozen_base_bytes(s),
        "optimizer step": int(OPTIMIZER_TEMP_SHARE * 4 * trainable) // shard_states if trains_base else 0,
        "loaded checkpoint": s.checkpoint_bytes,
        "logits": logit_bytes(s),
        "reference": weights // shard_weights if s.reference_copy else 0,
        "runtime": s.runtime_bytes,
    }
    if shard_weights > 1:  # one layer gathered whole at a time
        parts["weights"] += weights // max(1, s.shape.layers)
    return MemoryEstimate(parts=parts, trainable_params=trainable,
                          total_params=s.shape.params + (0 if trains_base else adapter_count(s)))
