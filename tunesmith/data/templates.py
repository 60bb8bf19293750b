"""Named chat templates for base models that ship none, and the choice of template for a run.

Each template is an ordinary Hugging Face Jinja template: `tokenizer.apply_chat_template` renders it,
so training, evaluation and serving all format a chat the same way. Every template:

* starts with the tokenizer's `bos_token` when it has one (base Llama-family models were pre-trained with a
  BOS at the start of every sequence, and the template, not the tokenizer, must add it: HF tokenizes a rendered
  chat with `add_special_tokens=False`);
* supports the roles system, user, assistant and tool, and `add_generation_prompt`;
* ends every assistant turn with an end-of-turn marker, which `tokenize.tokenize_conversation` trains, so the
  fine-tuned model learns to stop: `<|im_end|>` (chatml), `<|eot_id|>` (llama3), the tokenizer's
  `eos_token` (alpaca, plain);
* puts the generation prompt right before the assistant's content, with no trailing space, so the first
  answer token is the same whether the answer was rendered in a chat or generated after the prompt.

chatml and llama3 name markers (`<|im_start|>`, `<|eot_id|>`...) that a base tokenizer usually lacks. There
they are tokenized as plain text, several tokens each; that works (the marker's tokens are trained like any
other) but generation must then stop on the marker's text, not on a token id (`end_of_turn` gives it). We do
not add them as new special tokens: that would resize the embeddings and need those rows trained, which
LoRA alone does not do. On a base model without a template, `plain` (the default) is the safe choice: its
end of turn is the eos token the model already knows.
"""

from __future__ import annotations

from typing import Any

from tunesmith.errors import UserError, suggestion

_BOS = "{%- if bos_token is defined and bos_token %}{{ bos_token }}{% endif %}"
_EOS = "{{ eos_token }}"

CHATML = (
    _BOS
    + "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama 3 names the tool-result role `ipython` and trims contents, as Meta's template does.
LLAMA3 = (
    _BOS
    + "{%- for message in messages %}"
    "{%- set role = 'ipython' if message['role'] == 'tool' else message['role'] %}"
    "{{ '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Stanford Alpaca's prompt, extended to several turns; its preamble stands in for a missing system message.
ALPACA = (
    _BOS
    + "{%- if messages[0]['role'] != 'system' %}"
    "{{ 'Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'tool' %}{{ '### Tool result:\n' + message['content'] + '\n\n' }}"
    "{%- else %}{{ '### Response:\n' + message['content'] }}" + _EOS + "{{ '\n\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)

# "Assistant:" has no trailing space: the space before the answer is part of the answer's first token.
PLAIN = (
    _BOS
    + "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] }}" + _EOS + "{{ '\n' }}"
    "{%- else %}{{ message['role'] | capitalize + ': ' + message['content'] + '\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

TEMPLATES: dict[str, str] = {"chatml": CHATML, "llama3": LLAMA3, "alpaca": ALPACA, "plain": PLAIN}
"""Template name (as written in a recipe) -> Jinja source."""

_END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}  # the others end a turn with eos
_ALIASES = {"chat_ml": "chatml", "llama-3": "llama3", "llama_3": "llama3", "llama": "llama3", "raw": "plain"}

DEFAULT = "plain"
"""Used by `auto` when the tokenizer has no template: its end of turn is the eos the base model knows."""


def resolve_chat_template(tokenizer: Any, name: str | None) -> str:
    """The Jinja source for `name`; None or "auto" means the tokenizer's own template, else `plain`."""
    if name is None or name == "auto":
        return tokenizer.chat_template or TEMPLATES[DEFAULT]
    if name in TEMPLATES:
        return TEMPLATES[name]
    choices = ["auto", *TEMPLATES]
    raise UserError(
        f"unknown chat template '{name}'{suggestion(name, choices, _ALIASES)}; choose one of {', '.join(choices)}"
    )


def apply_template(tokenizer: Any, name: str | None) -> None:
    """Set `tokenizer.chat_template` from `name`, so every later `apply_chat_template` call uses it."""
    tokenizer.chat_template = resolve_chat_template(tokenizer, name)


def end_of_turn(tokenizer: Any, name: str | None) -> str:
    """The text that closes an assistant turn under template `name`: generation should stop on it.

    For a tokenizer's own template ("auto") the marker is unknown here; its eos token is the usual one.
    """
    resolve_chat_template(tokenizer, name)  # unknown names fail here, with did-you-mean
    return _END_OF_TURN.get(name or "auto") or tokenizer.eos_token
