"""`tunesmith serve TARGET...`: an OpenAI-compatible server over runs, adapters and models (serve/)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from tunesmith.commands.common import friendly


@friendly
def serve(
    targets: list[str] = typer.Argument(..., help="run folders, adapter folders, model folders or .gguf files "
                                        "(NAME=TARGET to pick the model id)"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="required bearer key (or env TUNESMITH_API_KEY)"),
    adapter_root: Optional[Path] = typer.Option(None, "--adapter-root", help="folder POST /v1/adapters may load from"),
    max_adapters: int = typer.Option(8, "--max-adapters", min=1, help="adapters kept in memory (LRU)"),
    queue_size: Optional[int] = typer.Option(None, "--queue-size", min=1, help="a fixed number of waiting "
                                             "requests before 503 (default: sized from measured throughput)"),
    max_queue_wait: float = typer.Option(30.0, "--max-queue-wait", help="seconds of queued work, at the measured "
                                         "throughput, beyond which requests get 503 + Retry-After"),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="rows per generation batch"),
    max_body_bytes: Optional[int] = typer.Option(None, "--max-body-bytes", help="larger request bodies get 413 "
                                                 "before they are read (default 4 MiB)"),
    request_log: Optional[Path] = typer.Option(None, "--request-log", help="JSON-lines request log (default: "
                                               "serve-logs/requests-TIME-PID.jsonl; printed at start)"),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="folder chat requests may name image "
                                              "files in (default: images only inline, as data: URIs)"),
    print_vllm: bool = typer.Option(False, "--print-vllm", help="print the equivalent vLLM command and exit"),
) -> None:
    """OpenAI-compatible server: chat and completions, streaming, adapters hot-swapped over one shared base."""
    from tunesmith.serve.server import API_KEY_ENV, ServeOptions
    from tunesmith.serve.server import serve as run_server

    if print_vllm:
        from tunesmith.serve.vllm import vllm_commands

        typer.echo(vllm_commands(targets, host, port, bool(api_key or os.environ.get(API_KEY_ENV))), nl=False)
        return
    run_server(ServeOptions(targets, host=host, port=port, api_key=api_key, adapter_root=adapter_root,
                            max_adapters=max_adapters, queue_size=queue_size, max_batch=max_batch,
                            max_queue_wait_s=max_queue_wait, request_log=request_log, image_root=image_root,
                            **({"max_body_bytes": max_body_bytes} if max_body_bytes is not None else {})))
