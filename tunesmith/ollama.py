"""An Ollama Modelfile for an exported GGUF: FROM the file, the chat template in Ollama's Go template syntax
for tunesmith's named templates (a model's own template is read by Ollama from the GGUF), and the stop text."""

from __future__ import annotations

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


def modelfile_text(gguf_name: str, template: str, stop: str) -> str:
    """The Modelfile beside `gguf_name`; `template` is the run's template name, `stop` its end of turn."""
    lines = [f"FROM ./{gguf_name}"]
    if template in _TEMPLATES:
        body = _TEMPLATES[template].replace("{EOS}", stop)
        lines.append(f'TEMPLATE """{body}"""')
    if stop:
        lines.append(f'PARAMETER stop "{stop}"')
    return "\n".join(lines) + "\n"
