"""`tunesmith train RECIPE --nproc N`: start N training processes on this machine with torch's launcher.

The same command line runs in every process (minus `--nproc`), under `torch.distributed.run`
(torchrun) with a local rendezvous; on CPU the processes talk over gloo, on GPUs over NCCL, and each
process finds its rank in the environment the launcher sets (distributed.py explains the split). For
several machines use accelerate's or torchrun's own arguments instead, e.g. on each of two nodes:

    accelerate launch --multi_gpu --num_machines 2 --machine_rank R --main_process_ip HOST --main_process_port 29500 \\
        --num_processes 16 -m tunesmith train recipe.yaml
"""

from __future__ import annotations

import os
import subprocess
import sys

from tunesmith.errors import UserError


def under_launcher() -> bool:
    """Whether this process was started by torchrun/accelerate (it then is one rank of several)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs `tunesmith <argv>` (already stripped of --nproc) in `nproc` processes."""
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "tunesmith", *argv]


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
    """Run the command in `nproc` processes and return the launcher's exit status (the worst rank's)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    child = subprocess.Popen(launch_command(nproc, strip_nproc(argv)), env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the ranks too: let them record the stop, then end as they do
        return child.wait()
