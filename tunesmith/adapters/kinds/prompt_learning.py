"""Prompt learning: `prefix` (learned key/value prefixes in every layer) and `prompt` (learned input embeddings
prepended to the prompt), each `virtual_tokens` long.

Both start from real tokens (their keys/values, their embeddings), not from noise. They need unpacked batches:
packed rows cannot isolate their samples once virtual tokens are in play (measured in tests/test_adapters.py),
so the recipe turns packing off for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunesmith.adapters.unit import Adapter, MemoryTerms, Serving

if TYPE_CHECKING:
    from peft import PeftModel

    from tunesmith.recipe.spec import AdapterArgs

VIRTUAL_TOKENS_PLANNED = 20
"""Virtual tokens the memory model assumes (PEFT's usual count; their weights are tiny either way)."""


def _prefix_config(model: Any, args: AdapterArgs) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(num_virtual_tokens=args.virtual_tokens, task_type="CAUSAL_LM")


def _prompt_config(model: Any, args: AdapterArgs) -> Any:
    from peft import PromptTuningConfig, PromptTuningInit

    # Start from embeddings of random vocabulary tokens: the model's own scale, unlike N(0, 1).
    return PromptTuningConfig(num_virtual_tokens=args.virtual_tokens, prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB,
                              task_type="CAUSAL_LM")


def init_prefix_from_tokens(model: PeftModel) -> None:
    """Start prefix tuning from the keys and values that real tokens produce (Li & Liang, 2021), not N(0, 1).

    PEFT's random prefix is far from any key/value the model has seen: on stories260k it raised held-out loss
    from 4.29 to 6.74 before the first step, and 30 steps brought it back only to 5.57, worse than no adapter.
    The keys/values the frozen model computes for `virtual_tokens` random vocabulary tokens start where the
    model reads ordinary text: at step 0 the adapted model equals the base reading those tokens first.
    """
    import torch

    with torch.no_grad():
        config = model.active_peft_config
        base = model.get_base_model()
        embedding = model.prompt_encoder[model.active_adapter].embedding
        ids = torch.randint(base.get_input_embeddings().num_embeddings, (1, config.num_virtual_tokens),
                            device=embedding.weight.device)
        was_training = base.training
        base.eval()
        cache = base(input_ids=ids, use_cache=True).cache
        base.train(was_training)
        # PEFT's layout of one virtual token's row: [keys of layer 0, values of layer 0, keys of layer 1, ...],
        # each (kv_heads * head_dim) wide; the cache holds (1, kv_heads, tokens, head_dim) per layer.
        per_layer = [s[0].transpose(0, 1).flatten(1) for layer in cache.layers for s in (layer.keys, layer.values)]
        embedding.weight.copy_(torch.cat(per_layer, dim=1))


def align_logits_to_inputs(model: Any) -> None:
    """Drop the logits of prompt tuning's virtual tokens, so logits line up with input tokens as for any model.

    PEFT prepends the virtual tokens to the inputs and returns their logits too (length virtual + input);
    every loss here pairs logits with the batch's labels position by position.
    """

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        inputs = kwargs.get("input_ids", args[0] if args else None)
        if inputs is None:
            inputs = kwargs["inputs_embeds"]
        length = inputs.shape[1]
        if output.logits is not None and output.logits.shape[1] > length:
            output.logits = output.logits[:, -length:]
        return output

    model.register_forward_hook(hook, with_kwargs=True)


PREFIX = Adapter(
    "prefix", "learned key/value prefixes in every layer (virtual_tokens long)",
    MemoryTerms(parameters=lambda shape, r: VIRTUAL_TOKENS_PLANNED * 2 * shape.layers * shape.hidden),
    Serving.STEPWISE, peft_config=_prefix_config, after_wrap=init_prefix_from_tokens,
    saved_as=lambda config: config.get("peft_type") == "PREFIX_TUNING", prompt_learning=True, checkpointing=False,
    merge_refusal="prefix tuning learns key/value vectors for virtual tokens placed before every sequence; they are "
                  "extra inputs to attention, not a change to any weight, so there is nothing to fold into the base",
    vllm_refusal="vLLM serves LoRA adapters only; prefix tuning adds key/values to every layer's attention",
)
PROMPT = Adapter(
    "prompt", "learned input embeddings prepended to the prompt (virtual_tokens long)",
    MemoryTerms(parameters=lambda shape, r: VIRTUAL_TOKENS_PLANNED * shape.hidden),
    Serving.STEPWISE, peft_config=_prompt_config, after_wrap=align_logits_to_inputs, after_load=align_logits_to_inputs,
    saved_as=lambda config: config.get("peft_type") == "PROMPT_TUNING", prompt_learning=True,
    merge_refusal="prompt tuning learns embeddings of virtual tokens prepended to every input; they are extra "
                  "inputs, not a change to any weight, so there is nothing to fold into the base",
    vllm_refusal="vLLM serves LoRA adapters only; prompt tuning prepends learned embeddings",
)
