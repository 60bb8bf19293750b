"""Quiet the few notices of third-party packages that every tunesmith command would otherwise print.

- DeepSpeed (the `test` and `deepspeed` extras) logs "Setting accelerator to CPU. If you have GPU or other
  accelerator, we were unable to detect it." on stdout the first time it is imported without a CUDA device.
  transformers' `save_pretrained` and accelerate's `unwrap_model` import it whenever it is installed, so on a
  CPU machine every command that saves or prepares a model printed it, in the middle of tunesmith's own output
  (and of anything piped from stdout). tunesmith says which device it trains on.
- bitsandbytes, imported on a CPU with AVX512-BF16, asks the `kernels` package to fetch a 4-bit matmul kernel
  from the Hugging Face Hub; offline, or when the hub repository is not on the trust list, that fails and it
  warns "Failed to load CPU gemm_4bit_forward from kernels-community ..." and falls back to its own kernel,
  which is what tunesmith's QLoRA tests measure. tunesmith never asks for remote kernel code to run, so the
  warning is about something that was never wanted.

Only those messages are dropped, by filters on the packages' loggers, installed before the packages create
them (logging returns the same logger object by name); every other warning of theirs still shows.
"""

from __future__ import annotations

import logging

QUIET: dict[str, str] = {
    "DeepSpeed": "Setting accelerator to CPU.",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}
"""Logger name -> the start of the one message dropped from it."""


class _DropNotice(logging.Filter):
    """Drops the records of one logger whose message starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_third_party_notices() -> None:
    """Install the filters of `QUIET` (and nothing else); idempotent."""
    for name, prefix in QUIET.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropNotice(prefix))
