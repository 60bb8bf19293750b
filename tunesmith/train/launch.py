"""`tunesmith train RECIPE --nproc N`: start N training processes on this machine, in this process's group.

The same command line runs in every process (minus `--nproc`), each told its rank the way torchrun tells it
(RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT on 127.0.0.1); on CPU the processes talk over gloo, on GPUs
over NCCL (distributed.py explains the split). We start them ourselves instead of through torchrun because
torchrun puts every rank in a session of its own: Ctrl-C in the terminal, the dashboard's Stop (a signal to
the launch's process group) and `kill -- -PGID` then reach the launcher but leave the ranks training. Here the
ranks share the launcher's group, so any of them reaches every rank, and the ranks agree on the stop
(train/stop_request.py) so they all keep the same last checkpoint. When one rank fails, the others are stopped.

For several machines use accelerate's or torchrun's own arguments instead, e.g. on each of two nodes:

    accelerate launch --multi_gpu --num_machines 2 --machine_rank R --main_process_ip HOST --main_process_port 29500 \\
        --num_processes 16 -m tunesmith train recipe.yaml
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tunesmith.errors import UserError

INTERRUPTED = 130
"""A rank's exit status after a stop request (Ctrl-C): the others are stopping too, so they are let finish."""


def under_launcher() -> bool:
    """Whether this process was started by torchrun/accelerate (it then is one rank of several)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def leave_process_group() -> None:
    """Tear down this rank's process group before the interpreter exits.

    Left to interpreter shutdown, a live gloo group (with DeepSpeed's ZeRO-2 especially) can be destroyed while
    its worker threads are still joinable, and the rank then dies in C++ ("terminate called without an active
    exception", exit status 134) after its run was saved: the launcher reports a failure for a finished run.
    PyTorch asks for `destroy_process_group()` before exit for this reason."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch_command(argv: list[str]) -> list[str]:
    """The command every rank runs: `tunesmith <argv>` (already stripped of --nproc)."""
    return [sys.executable, "-m", "tunesmith", *argv]


def rank_environments(nproc: int, port: int) -> list[dict[str, str]]:
    """The environment of each of `nproc` ranks on this machine, as torchrun would set it."""
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    base = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0",
            "NODE_RANK": "0", "ROLE_WORLD_SIZE": str(nproc)}
    return [{**base, "RANK": str(r), "LOCAL_RANK": str(r), "ROLE_RANK": str(r)} for r in range(nproc)]


def free_port() -> int:
    """A TCP port nobody listens on now, for the ranks' rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def strip_nproc(argv: list[str]) -> list[str]:
    """`argv` without `--nproc N` / `--nproc=N`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def relaunch(nproc: int, argv: list[str]) -> int:
    """Run the command in `nproc` processes of this process group; returns the worst rank's exit status."""
    command = launch_command(strip_nproc(argv))
    ranks = [subprocess.Popen(command, env=env) for env in rank_environments(nproc, free_port())]
    while True:
        try:
            return _supervise(ranks)
        except KeyboardInterrupt:  # a signal to the launcher alone: pass it on (ranks take repeats as one)
            _signal(ranks, signal.SIGINT)


def _supervise(ranks: list[subprocess.Popen]) -> int:
    """Wait for every rank; once one fails (other than by a stop request) the others are terminated, since
    they would wait for it forever in their next collective."""
    cause: int | None = None  # the first failure's status: the terminated ranks' own say nothing
    while True:
        codes = [rank.poll() for rank in ranks]
        failed = [code for code in codes if code not in (None, 0, INTERRUPTED)]
        if failed and cause is None:
            cause = failed[0]
            _signal(ranks, signal.SIGTERM)
        if all(code is not None for code in codes):
            status = cause if cause is not None else max(codes, key=lambda c: abs(c or 0)) or 0  # type: ignore[arg-type]
            return 128 - status if status < 0 else status  # killed by signal S: 128 + S, as a shell says
        time.sleep(0.2)


def _signal(ranks: list[subprocess.Popen], sig: signal.Signals) -> None:
    for rank in ranks:
        if rank.poll() is None:
            rank.send_signal(sig)
