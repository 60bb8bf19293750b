"""An Ollama Modelfile for an exported GGUF: FROM the file, the chat template in Ollama's Go template syntax,
the default system prompt when the template injects one, and the stop text.

A named tunesmith template (chatml, llama3, plain, alpaca) has its Go form below. A model's own (Jinja)
template is recognised by what it renders, not by its source text: a probe conversation (system, user,
assistant, user) is rendered by the tokenizer and compared with what each known Go template would render.
ChatML and Llama 3 headers are recognised; when the template renders exactly one of them, the Modelfile gets
that TEMPLATE (and a SYSTEM line with the prompt the template adds when a conversation has none, as SmolLM2's
does). Anything else gets a comment saying so, and Ollama falls back to its own reading of the GGUF.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_TEMPLATES = {
    "chatml": "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
              "<|im_start|>assistant\n",
    "llama3": "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
              "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
    "plain": "{{- range .Messages }}{{ if eq .Role \"assistant\" }}Assistant: {{ .Content }}{EOS}\n"
             "{{ else if eq .Role \"user\" }}User: {{ .Content }}\n{{ else if eq .Role \"system\" }}System: "
             "{{ .Content }}\n{{ else }}Tool: {{ .Content }}\n{{ end }}{{ end }}Assistant:",
    "alpaca": "{{- if not .System }}Below is an instruction that describes a task. Write a response that "
              "appropriately completes the request.\n\n{{ end }}{{- range .Messages }}"
              "{{ if eq .Role \"system\" }}{{ .Content }}\n\n{{ else if eq .Role \"user\" }}### Instruction:\n"
              "{{ .Content }}\n\n{{ else if eq .Role \"assistant\" }}### Response:\n{{ .Content }}{EOS}\n\n"
              "{{ else }}### Tool result:\n{{ .Content }}\n\n{{ end }}{{ end }}### Response:\n",
}
_PROBE = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
          {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Name a colour."}]
Turn = Callable[[str, str], str]
_RENDERED: dict[str, Turn] = {
    "chatml": lambda role, text: f"<|im_start|>{role}\n{text}<|im_end|>\n",
    "llama3": lambda role, text: f"<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>",
}
"""What one message renders to under each Go template above that a model's own template can match."""


def modelfile_text(gguf_name: str, template: str, stop: str, tokenizer: Any = None) -> str:
    """The Modelfile beside `gguf_name`; `template` is the run's template name ("auto": the tokenizer's own,
    recognised through `tokenizer`), `stop` its end of turn."""
    lines = [f"FROM ./{gguf_name}"]
    style, system = (template, None) if template in _TEMPLATES else recognise(tokenizer)
    if style is not None:
        body = _TEMPLATES[style].replace("{EOS}", stop)
        lines.append(f'TEMPLATE """{body}"""')
        if system:
            lines.append(f'SYSTEM """{system}"""')
    else:
        lines += ["# TEMPLATE: the model's chat template is neither ChatML nor Llama 3, the forms tunesmith writes",
                  "# in Ollama's Go syntax; Ollama guesses one from the template stored in the GGUF. Check `ollama",
                  "# show --template`, and write a TEMPLATE line here if its guess renders differently."]
    if stop:
        lines.append(f'PARAMETER stop "{stop}"')
    return "\n".join(lines) + "\n"


def recognise(tokenizer: Any) -> tuple[str | None, str | None]:
    """(the Go template name a tokenizer's own chat template renders like, or None; the system prompt it adds
    to a conversation that has none, or None)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None, None
    try:
        with_system = _render(tokenizer, _PROBE)
        without = _render(tokenizer, _PROBE[1:])
    except Exception:  # a template that refuses the probe (e.g. no system role) is not one of these
        return None, None
    for style, turn in _RENDERED.items():
        if with_system == _go(turn, _PROBE):
            try:
                return style, _added_system(turn, without)
            except ValueError:
                return None, None
    return None, None


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = getattr(tokenizer, "bos_token", None)
    return text[len(bos):] if bos and text.startswith(bos) and not _starts_a_turn(bos) else text


def _starts_a_turn(bos: str) -> bool:
    """SmolLM2's bos is <|im_start|>: there it opens the first turn, and is not a prefix to strip."""
    return bos in ("<|im_start|>", "<|start_header_id|>")


def _go(turn: Turn, messages: list[dict[str, str]]) -> str:
    """What the Go template renders: every message, then the assistant's opening."""
    return "".join(turn(m["role"], m["content"]) for m in messages) + turn("assistant", "\0").split("\0")[0]


def _added_system(turn: Turn, rendered: str) -> str | None:
    """The system prompt the template adds when there is none (`rendered` must be exactly that turn plus the
    rest), or None when it adds nothing; ValueError when it renders the conversation any other way."""
    rest = _go(turn, _PROBE[1:])
    if rendered == rest:
        return None
    head, tail = turn("system", "\0").split("\0")
    prompt = rendered[len(head):len(rendered) - len(rest) - len(tail)]
    if not prompt or rendered != turn("system", prompt) + rest:
        raise ValueError("the template changes a conversation without a system message in another way")
    return prompt
