"""`tunesmith serve --print-vllm`: the vLLM command that serves the same targets, for scale beyond one process.

vLLM serves plain LoRA adapters (`--enable-lora --lora-modules name=path`) over one base per process. It does
not serve DoRA (vllm-project/vllm issue 10849), IA3, prefix or prompt tuning, or our bottleneck layers; for
those the output says why and offers `tunesmith merge` where the adapter is a linear update (DoRA, IA3) so the
merged model serves as a plain model, or `tunesmith serve` where it is not.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tunesmith.runs.record import is_run_folder
from tunesmith.serve.targets import ServeSpec, has_tokenizer, resolve

VLLM_DEFAULT_MAX_RANK = 16


def vllm_commands(target_specs: list[str], host: str = "127.0.0.1", port: int = 8000,
                  with_key: bool = False) -> str:
    """The vLLM command(s), one per base, and a note per adapter vLLM cannot serve."""
    specs = [s for t in target_specs for s in resolve(t)]
    by_base: dict[str, list[ServeSpec]] = {}
    for spec in specs:
        by_base.setdefault(spec.base, []).append(spec)
    lines, notes = [], []
    for offset, (base, group) in enumerate(by_base.items()):
        loras = [s for s in group if s.adapter_kind is not None and s.adapter_kind.vllm_refusal is None]
        command = ["vllm", "serve", base, "--host", host, "--port", str(port + offset)]
        if base.endswith(".gguf"):
            tokenizer = gguf_tokenizer(base, group)
            command += ["--tokenizer", str(tokenizer)] if tokenizer is not None else []
            if tokenizer is None:
                notes.append(f"# {base}: no folder with its tokenizer files found; vLLM then reads the tokenizer "
                             "from the GGUF file (slow, and it may differ): add --tokenizer ORIGINAL_MODEL_FOLDER")
        if loras:
            modules = [f"{s.name}={s.adapter}" for s in loras]
            command += ["--enable-lora", "--lora-modules", *modules]
            rank = max(_rank(s.adapter) for s in loras)
            if rank > VLLM_DEFAULT_MAX_RANK:
                command += ["--max-lora-rank", str(rank)]
        if with_key:
            command += ["--api-key", "$TUNESMITH_API_KEY"]
        lines.append(" ".join(shlex.quote(c) if not c.startswith("$") else c for c in command))
        for spec in group:
            if spec.adapter_kind is not None and spec.adapter_kind.vllm_refusal is not None:
                notes.append(_note(spec))
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def gguf_tokenizer(base: str, group: list[ServeSpec]) -> Path | None:
    """A folder holding the tokenizer files of the GGUF model `base`, for vLLM's `--tokenizer`: an adapter
    trained on it (a run saves the tokenizer, with its chat template, beside the adapter), else the GGUF
    file's own folder when it holds them; None when neither does."""
    folders = [s.adapter for s in group if s.adapter is not None] + [Path(base).parent]
    return next((folder for folder in folders if has_tokenizer(folder)), None)


def _note(spec: ServeSpec) -> str:
    kind = spec.adapter_kind
    assert kind is not None and kind.vllm_refusal is not None
    run = spec.adapter.parent if spec.adapter is not None and is_run_folder(spec.adapter.parent) else None
    fix = (f"merge it into its base and serve the merged model: tunesmith merge {run}" if kind.merges and run
           else "merge it into its base (tunesmith merge RUN)" if kind.merges
           else "it cannot be merged; serve it with tunesmith serve")
    return f"# not served by vLLM: {spec.name} ({spec.kind}): {kind.vllm_refusal}; {fix}"


def _rank(folder: Path | None) -> int:
    try:
        return int(json.loads((Path(folder) / "adapter_config.json").read_text()).get("r", 8))
    except (OSError, ValueError, TypeError):
        return 8
