"""`tunesmith` as torchrun runs it, but one rank kills itself with SIGKILL at a chosen point.

    KILL_RANK=1 KILL_AT=step:3 torchrun --nproc-per-node 2 tests/helpers/kill_rank.py train RECIPE
KILL_AT is `step:N` (as optimizer step N, 1-based, begins) or `save:N` (in the middle of writing
checkpoint step-N: after its weights file, before the rest). The other rank is then stopped by the launcher.
"""

from __future__ import annotations

import os
import signal
import sys

from tunesmith.train import checkpoint, loop

RANK = int(os.environ.get("RANK", "0"))
KIND, AT = os.environ["KILL_AT"].split(":")
AT_STEP = int(AT)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if RANK == int(os.environ["KILL_RANK"]):
    if KIND == "step":
        real_step = loop._train_step

        def step_then_die(trainer, step):
            if step + 1 == AT_STEP:
                die()
            return real_step(trainer, step)

        loop._train_step = step_then_die
    else:
        real_save = checkpoint.save_file

        def save_then_die(tensors, path, *args, **kwargs):
            real_save(tensors, path, *args, **kwargs)
            if f"step-{AT_STEP}-" in str(path):
                die()

        checkpoint.save_file = save_then_die

from tunesmith.cli import app  # noqa: E402

app(sys.argv[1:])
