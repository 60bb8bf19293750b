"""The recipe: one YAML file, validated once into typed objects, then passed around.

Nothing downstream reads a raw dict: a typo in a key fails here, with the key's dotted path and a
did-you-mean, instead of silently reading as a default later. `load_recipe(path, overrides)` is the
only entry point; overrides are dotted `key=value` strings from the command line.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, create_model, model_validator

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.adapters.unit import Adapter
from tunesmith.data.formats import FORMATS
from tunesmith.data.templates import TEMPLATES
from tunesmith.errors import UserError
from tunesmith.methods import BY_NAME, METHOD_NAMES, METHODS
from tunesmith.recipe.errors import explain_validation_error
from tunesmith.recipe.registry import ADAPTERS, ATTN_IMPLEMENTATIONS, EVAL_SUITES, KERNELS, TRACKERS
from tunesmith.recipe.schema import Strict
from tunesmith.recipe.schema import unknown_value as _unknown
from tunesmith.recipe.user_code import NO_USER_CODE, UserCode
from tunesmith.recipe.yaml_io import load_yaml

DEFAULT_ADAPTER_LR = 1e-4
"""LoRA-family learning rate from practice: adapters tolerate (and need) a larger step."""
DEFAULT_FULL_LR = 2e-5
"""Full fine-tuning learning rate from practice: large steps on all weights erase general skills."""
MAX_SAFE_EPOCHS = 3


class ReplaySpec(Strict):
    """General-domain data mixed in during full fine-tuning, against catastrophic forgetting."""

    train: str | list[str]
    ratio: float = Field(0.2, gt=0.0, lt=1.0, description="share of trained tokens that come from replay data")
    format: str = "auto"


class DataSpec(Strict):
    train: str | list[str] = Field(description="file(s), folder, or hub dataset id")
    eval: float | str | list[str] | None = Field(0.1, description="a file, or a held-out fraction of train")
    format: str = Field("auto", description="auto | " + " | ".join(FORMATS))
    split: str = Field("train", description="split name for hub datasets")
    on_bad_row: Literal["error", "skip"] = Field("error", description="skip counts bad rows in the report")
    template: str = Field("auto", description="chat template: the tokenizer's own, else " + " | ".join(TEMPLATES))
    train_on: Literal["all", "last"] = Field("all", description="which assistant turns carry the loss")
    max_rows: int | None = Field(None, gt=0, description="use only the first N rows (quick experiments)")
    max_prompt_len: int | None = Field(None, gt=0, description="preference/KTO/reward: cut prompts longer than this "
                                       "from their start before answers are cut from their end; None: the prompt gets "
                                       "what the answer leaves, the answer at least half of train.max_seq_len")
    replay: ReplaySpec | None = None
    cache: bool = Field(True, description="keep the tokenized data in a memory-mapped store and reuse it in later runs "
                        "with the same files, tokenizer and settings (kept in $TUNESMITH_CACHE/data, default "
                        "~/.cache/tunesmith/data)")
    num_proc: int | None = Field(None, ge=1, description="processes that tokenize the data (None: every core); the "
                                 "result is the same for any number")
    streaming: bool = Field(False, description="read, tokenize and pack the training rows while training consumes "
                            "them (files, folders, globs or fsspec URLs such as s3://, gs://, hf://, read in place), "
                            "instead of preparing the whole corpus first; needs train.max_steps and method sft or cpt; "
                            "the stream's position is saved in every checkpoint, so --resume continues exactly; under --nproc N "
                            "every process reads the whole stream and trains its share of each step's micro-batches "
                            "(as from the store), so N processes train as one does")
    shuffle_buffer: int = Field(1000, gt=0, description="streaming: rows of a shard read, shuffled and packed "
                                "together (one window; shards are shuffled by train.shuffle too)")

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(_unknown("data.format", self.format, FORMATS))
        if self.template != "auto" and self.template not in TEMPLATES:
            raise ValueError(_unknown("data.template", self.template, TEMPLATES))
        if isinstance(self.eval, float) and not 0.0 <= self.eval < 1.0:
            raise ValueError("data.eval: a held-out fraction must be in [0, 1), e.g. 0.1; or give a file")
        return self


class ModelOptions(Strict):
    dtype: str = Field("auto", description="auto (bf16 where supported, else fp32) | bf16 | fp16 | fp32")
    attn_implementation: str = Field("auto", description="auto (flash_attention_2 on a CUDA GPU with flash-attn in "
                                     "bf16/fp16, else sdpa, or eager for models without sdpa) | sdpa | eager | "
                                     "flash_attention_2")
    kernels: str = Field("auto", description="auto (liger where it can run, else none; LoRA layers fused to keep "
                         "less for backward, speedups/lora_fused.py; on CPU, freed host memory kept for reuse, "
                         "speedups/host_memory.py) | none (plain PyTorch and PEFT) | liger (fused Triton kernels: needs CUDA "
                         "and `pip install liger-kernel`, else warns and runs without)")
    trust_remote_code: bool = Field(False, description="run code shipped with the model; off unless you trust it")

    @model_validator(mode="after")
    def _check(self) -> ModelOptions:
        if self.dtype.strip().lower() not in (dtypes := ("auto", "bf16", "bfloat16", "fp16", "float16", "fp32", "float32")):
            raise ValueError(_unknown("model_options.dtype", self.dtype, dtypes))
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(_unknown("model_options.attn_implementation", self.attn_implementation,
                                      ATTN_IMPLEMENTATIONS))
        if self.kernels not in KERNELS:
            raise ValueError(_unknown("model_options.kernels", self.kernels, KERNELS))
        return self


class AdapterArgs(Strict):
    """Knobs of the adapter methods; each method reads the ones that apply to it."""

    r: int = Field(16, gt=0, description="LoRA/DoRA rank")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description="module names, or all-linear")
    virtual_tokens: int = Field(20, gt=0, description="prefix/prompt tuning length")
    bottleneck_size: int = Field(64, gt=0, description="bottleneck adapter hidden size")


class VisionSpec(Strict):
    """Vision-language models (vision/adapt.py): what trains besides the language model's adapter. Pictures train
    with `method: sft` (image chats) and `method: dpo`, every `dpo.loss` (preference pairs whose prompt holds the
    pictures); orpo, reward and kto rows with pictures are refused, grpo/ppo prompts pass them to rewards only."""

    train_projector: bool = Field(False, description="train the image-to-text projector whole (saved with the adapter)")
    train_vision_tower: bool = Field(False, description="train the vision tower whole too (frozen by default)")


class TrainSpec(Strict):
    lr: float | None = Field(None, gt=0.0, description=f"default {DEFAULT_ADAPTER_LR} for adapters, {DEFAULT_FULL_LR} for full")
    epochs: float = Field(3, gt=0, description="passes over the data (fractions allowed); more than 3 warns")
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    batch_size: int = Field(8, gt=0, description="sequences (or packed rows of max_seq_len) per micro-batch")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step; the loss is normalised over all of them")
    max_seq_len: int = Field(1024, gt=8, description="tokens per sample (longer ones are cut) and per packed row")
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="share of steps with linear learning-rate warmup")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW decay (not applied to biases and norms)")
    packing: bool = Field(True, description="pack samples into rows (no pad tokens, no cross-sample attention)")
    seed: int = Field(0, ge=0, lt=2**32, description="fixes data order, eval split and initialisation")
    shuffle: bool = Field(True, description="shuffle samples every epoch (seeded); false keeps file order (packing still groups by length)")
    threads: int | None = Field(None, gt=0, description="CPU threads for torch; None: torch's default. On a shared machine, fewer than the cores can be several times faster")
    scheduler: Literal["linear", "cosine", "constant"] = Field("cosine", description="learning-rate decay after warmup")
    max_grad_norm: float = Field(1.0, gt=0.0, description="gradient clipping threshold")
    eval_every: int | None = Field(None, gt=0, description="optimizer steps between evaluations; None: at the end")
    save_every: int | None = Field(None, gt=0, description="optimizer steps between checkpoints")
    keep_checkpoints: int = Field(2, gt=0, description="newest checkpoints kept on disk")
    gradient_checkpointing: bool | Literal["auto"] = Field("auto", description="recompute activations in backward: less memory, about a third more time; auto: only when a micro-batch's activations would not fit in half the free memory")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field("auto", description="auto: bf16 where the hardware has it; master weights stay fp32")
    log_every: int = Field(1, gt=0, description="optimizer steps between metrics.jsonl records")
    patience: int | None = Field(None, gt=0, description="evaluations without eval-loss improvement before warning")
    early_stop: bool = Field(False, description="stop (and keep the best checkpoint) when the train.patience alarm fires")
    report_to: list[str] = Field(default_factory=list, description=" | ".join(TRACKERS) + ": trackers that also get metrics.jsonl's records and the resolved recipe (pip install tunesmith[trackers])")

    @model_validator(mode="after")
    def _check_early_stop(self) -> TrainSpec:
        if self.early_stop and not (self.patience and self.eval_every):
            raise ValueError("train.early_stop needs train.patience (evaluations without improvement) and "
                             "train.eval_every (steps between evaluations); set both, e.g. patience: 3, eval_every: 50")
        for name in self.report_to:
            if name not in TRACKERS:
                raise ValueError(_unknown("train.report_to", name, TRACKERS))
        return self


class JudgeSpec(Strict):
    """An OpenAI-compatible endpoint that grades answers (MT-Bench style) for `tunesmith eval --suite judge`."""

    url: str | None = Field(None, description="not used by tunesmith eval of a run folder (a run never chooses where answers and keys go): pass --judge URL or set TUNESMITH_JUDGE_URL")
    model: str | None = Field(None, description="the judge model's name at that endpoint")
    key_env: str = Field("OPENAI_API_KEY", description="not used by tunesmith eval of a run folder: the key comes from --judge-key-env NAME, else TUNESMITH_JUDGE_KEY, else OPENAI_API_KEY")
    questions: str | None = Field(None, description='JSONL of {"question": ..., "reference": optional}')


class EvalSpec(Strict):
    """Defaults for `tunesmith eval RUN` (its command-line options win)."""

    suite: list[str] | None = Field(None, description=" | ".join(EVAL_SUITES) + "; None: what the inputs allow")
    max_drop: float | None = Field(None, description="fail (exit 3) when a general benchmark falls more points than this")
    limit: int | None = Field(None, gt=0, description="items per benchmark (per MMLU subject), for speed")
    shots: int | None = Field(None, ge=0, description="few-shot examples; None: 5 for MMLU/GSM8K, 0 for HellaSwag")
    data_dir: str | None = Field(None, description="folder with mmlu/, hellaswag*.jsonl, gsm8k*.jsonl, mt_bench/")
    judge: JudgeSpec = JudgeSpec()

    @model_validator(mode="after")
    def _check(self) -> EvalSpec:
        for name in self.suite or []:
            if name not in EVAL_SUITES:
                raise ValueError(_unknown("eval.suite", name, EVAL_SUITES))
        return self


class DistributedSpec(Strict):
    """How several processes share the work (tunesmith train --nproc N, torchrun, accelerate launch)."""

    strategy: Literal["ddp", "fsdp2", "zero2", "zero3"] = Field("ddp", description="ddp: every process holds the whole model; fsdp2: parameters, gradients and optimizer state sharded over the processes (torch fully_shard); zero2: DeepSpeed ZeRO-2, gradients and optimizer state sharded; zero3: DeepSpeed ZeRO-3, parameters too (zero2/zero3: pip install deepspeed; sft/cpt with lora or full, no train.save_every)")
    zero_options: dict[str, Any] = Field(default_factory=dict, description="zero2/zero3 only: extra keys of DeepSpeed's zero_optimization block, passed as they are, e.g. {stage3_param_persistence_threshold: 0} (ZeRO-3 keeps parameters smaller than this, default 1e5 elements, whole on every process); the stage comes from strategy")

    @model_validator(mode="after")
    def _check_zero_options(self) -> DistributedSpec:
        if self.zero_options and self.strategy not in ("zero2", "zero3"):
            raise ValueError(f"distributed.zero_options applies to strategy zero2/zero3 only, not {self.strategy}")
        if "stage" in self.zero_options:
            raise ValueError("distributed.zero_options cannot set stage: choose strategy zero2 or zero3")
        return self


class _RecipeCore(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="run folder name")
    model: str = Field(description="local folder, hub id, or a GGUF file (or a folder holding one), de-quantized once into a cached Hugging Face copy")
    method: str = Field("sft", description=" | ".join(METHOD_NAMES))
    adapter: str = Field("lora", description=" | ".join(ADAPTERS))
    data: DataSpec
    train: TrainSpec = TrainSpec()
    output: str = Field("runs", description="parent folder of the run folder (output/name)")
    model_options: ModelOptions = ModelOptions()
    adapter_args: AdapterArgs = AdapterArgs()
    vision: VisionSpec = VisionSpec()
    eval: EvalSpec = EvalSpec()
    distributed: DistributedSpec = DistributedSpec()

    @model_validator(mode="after")
    def _check(self) -> _RecipeCore:
        if self.method not in BY_NAME:
            raise ValueError(_unknown("method", self.method, METHOD_NAMES))
        if self.adapter not in ADAPTERS:
            raise ValueError(_unknown("adapter", self.adapter, ADAPTERS))
        problems = _conflicts(self)
        if problems:
            raise ValueError("\n".join(problems))
        if self.adapter_kind.prompt_learning and self.train.packing:
            self.train.packing = False  # see advice(): packed rows cannot keep samples apart with virtual tokens
        if not self.adapter_kind.checkpointing and self.train.gradient_checkpointing == "auto":
            self.train.gradient_checkpointing = False  # e.g. PEFT's prefix tuning cannot run under checkpointing
        return self

    @property
    def adapter_kind(self) -> Adapter:
        """The record of `adapter:` (adapters/kinds/): what the rest of tunesmith asks about the adapter."""
        return ADAPTER_KINDS[self.adapter]

    @property
    def run_dir(self) -> Path:
        return Path(self.output) / self.name

    @property
    def lr(self) -> float:
        """The learning rate in force: the recipe's, else the method-aware default."""
        if self.train.lr is not None:
            return self.train.lr
        return DEFAULT_FULL_LR if self.adapter_kind.trains_base else DEFAULT_ADAPTER_LR

    def advice(self) -> list[str]:
        """Warnings about legal but risky choices, printed before a run."""
        notes = []
        if self.train.epochs > MAX_SAFE_EPOCHS and self.train.max_steps is None:
            notes.append(
                f"train.epochs={self.train.epochs:g} > {MAX_SAFE_EPOCHS}: beyond 3 epochs fine-tuning tends to "
                "overfit the task and lose general ability; prefer more (or better) data, or watch eval loss"
            )
        if self.adapter_kind.trains_base and self.train.lr is not None and self.train.lr > 1e-4:
            notes.append(f"train.lr={self.train.lr:g} is high for full fine-tuning; {DEFAULT_FULL_LR:g} is typical")
        if self.adapter_kind.prompt_learning:
            notes.append(f"adapter: {self.adapter} trains on padded batches (train.packing is off): with virtual tokens "
                         "in front, packed samples would attend to each other (PEFT drops or shifts position_ids)")
        if self.adapter_kind.trains_base and self.data.replay is None and BY_NAME[self.method].trains_on_samples:
            notes.append("full fine-tuning without data.replay: general ability may be forgotten; "
                         "add data.replay: {train: <general data>, ratio: 0.2}")
        return notes


Recipe = create_model(
    "Recipe", __base__=_RecipeCore, __module__=__name__,
    __doc__="A fine-tuning run: model, method, adapter, data, training, evaluation, and the method's own block.",
    **{method.name: (method.block | None, None) for method in METHODS if method.block is not None},
)
"""The recipe: the core keys plus one optional block per method that has settings (`dpo:`, `grpo:`, ...)."""
if TYPE_CHECKING:  # for type checkers: the method blocks as attributes
    from tunesmith.methods.dpo import DpoSpec
    from tunesmith.methods.grpo import GrpoSpec
    from tunesmith.methods.kto import KtoSpec
    from tunesmith.methods.orpo import OrpoSpec
    from tunesmith.methods.ppo import PpoSpec

    class Recipe(_RecipeCore):  # type: ignore[no-redef]
        dpo: DpoSpec | None
        kto: KtoSpec | None
        orpo: OrpoSpec | None
        grpo: GrpoSpec | None
        ppo: PpoSpec | None


def _conflicts(r: Recipe) -> list[str]:
    """Cross-field conflicts, each phrased as what to change."""
    problems = []
    fmt, allowed = r.data.format, BY_NAME[r.method].formats
    if fmt != "auto" and fmt not in allowed:
        problems.append(f"method: {r.method} trains on {' or '.join(allowed)} data, but data.format is '{fmt}'; "
                        f"set data.format: {allowed[0]} (or auto), or choose another method")
    kind = ADAPTER_KINDS[r.adapter]
    if not kind.checkpointing and r.train.gradient_checkpointing is True:
        problems.append(f"adapter: {r.adapter} does not work with activation checkpointing; set "
                        "train.gradient_checkpointing: false")
    if r.data.replay is not None and not kind.trains_base:
        problems.append("data.replay mixes general data into full fine-tuning; set adapter: full, or remove data.replay "
                        "(adapters leave the base weights untouched, so they forget little)")
    if kind.prompt_learning and r.adapter_args.target_modules != "all-linear":
        problems.append(f"adapter_args.target_modules does not apply to adapter: {r.adapter}; remove it")
    return problems + _streaming_conflicts(r) + _alignment_conflicts(r)


def _streaming_conflicts(r: Recipe) -> list[str]:
    """What `data.streaming: true` cannot do: count epochs, hold out a fraction, mix replay, feed pairs."""
    if not r.data.streaming:
        return []
    problems = []
    if r.train.max_steps is None:
        problems.append("data.streaming: true needs train.max_steps (a stream's length is not known before it is "
                        "read, so epochs cannot be counted); set train.max_steps: N, or data.streaming: false")
    if not BY_NAME[r.method].trains_on_samples:
        problems.append(f"data.streaming: true feeds methods that train on token samples; method: {r.method} "
                        "trains on whole examples: set data.streaming: false")
    if r.data.replay is not None:
        problems.append("data.streaming: true cannot mix data.replay in; remove data.replay, or stream without it")
    if isinstance(r.data.eval, float) and r.data.eval > 0 and "eval" in r.data.model_fields_set:
        problems.append("data.streaming: true cannot hold out a fraction of a stream; give data.eval a file, or 0")
    if r.data.max_rows is not None:
        problems.append("data.max_rows does not apply to a stream (train.max_steps bounds it); remove it")
    return problems


def _alignment_conflicts(r: Recipe) -> list[str]:
    """Each method block belongs to its method; each method checks what it needs (methods/<name>)."""
    problems = [f"{m.name}: this block configures method: {m.name}; remove it, or set method: {m.name}"
                for m in METHODS if m.block is not None and getattr(r, m.name) is not None and m is not BY_NAME[r.method]]
    return problems + BY_NAME[r.method].problems(r)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["train.lr=2e-5", "data.train=x.jsonl"]` -> nested dict; values parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override '{item}' must look like key=value, e.g. train.lr=2e-5")
        value = yaml.safe_load(raw) if raw else ""
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}': '{part}' is set both as a value and as a block")
        node[parts[-1]] = value
    return nested


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` into a copy of `base` (overrides win)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe", user_code: UserCode = NO_USER_CODE) -> Recipe:
    """Validate a plain dict into a Recipe, turning pydantic's errors into one clear UserError.

    `user_code`: the files given on the command line whose functions the recipe may name (recipe/user_code.py).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Recipe.model_validate(raw, context={"user_code": user_code})
    except ValidationError as err:
        raise UserError(explain_validation_error(err, Recipe, source)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None, user_code: UserCode = NO_USER_CODE) -> Recipe:
    """Read a YAML recipe, apply dotted overrides, validate once.

    Relative data/model paths stay relative to the current directory, as users type them.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    raw = load_yaml(path) or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe is a mapping of keys (name, model, method, ...), got {type(raw).__name__}")
    raw = merge(raw, parse_overrides(overrides or []))
    return recipe_from_dict(raw, str(path), user_code)
