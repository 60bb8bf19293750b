"""Quiet one notice of a third-party package that every tunesmith command would otherwise print.

DeepSpeed (the `test` and `deepspeed` extras) logs "Setting accelerator to CPU. If you have GPU or other
accelerator, we were unable to detect it." on stdout the first time it is imported without a CUDA device.
transformers' `save_pretrained` and accelerate's `unwrap_model` import it whenever it is installed, so on a
CPU machine every command that saves or prepares a model printed it, in the middle of tunesmith's own output
(and of anything piped from stdout). The notice carries no information here: tunesmith says which device it
trains on. Only that message is dropped, by a filter on DeepSpeed's logger, installed before DeepSpeed creates
the logger (logging returns the same logger object by name); every other DeepSpeed warning still shows.
"""

from __future__ import annotations

import logging

DEEPSPEED_LOGGER = "DeepSpeed"
CPU_NOTICE = "Setting accelerator to CPU."


def _not_the_cpu_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(CPU_NOTICE)


def quiet_deepspeed_cpu_notice() -> None:
    """Drop DeepSpeed's "Setting accelerator to CPU" notice (and nothing else); idempotent."""
    logger = logging.getLogger(DEEPSPEED_LOGGER)
    if _not_the_cpu_notice not in logger.filters:
        logger.addFilter(_not_the_cpu_notice)
