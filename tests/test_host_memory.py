"""Keeping freed host memory (speedups/host_memory.py): a freed block is reused without faulting its pages in again.

Each check runs in a fresh interpreter, because the setting is process-wide.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="speedups/host_memory.py tunes glibc's malloc only")

MIB = 2**20
PAGES_16_MIB = 16 * MIB // 4096

REUSE = """
import ctypes, json, resource, sys
from tunesmith.speedups.host_memory import keep_freed_host_memory
kept = keep_freed_host_memory() if sys.argv[1] == "kept" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 16 * 2**20  # an activation-sized block
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)  # written, as a tensor is
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    libc.free(block)
print(json.dumps({"kept": kept, "faults": faults}))
"""

STEPS = """
import json, resource, torch
from tunesmith.speedups.host_memory import keep_freed_host_memory
kept = keep_freed_host_memory()
x = torch.ones(4, 512, 1024)
def step():  # as a training step does: activations kept for backward (8 MiB each), then all freed
    kept_for_backward = [x * 2.0 for _ in range(8)]
    del kept_for_backward
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_freed_block_is_reused_without_faults_only_when_kept() -> None:
    default, kept = _run(REUSE, "default"), _run(REUSE, "kept")
    # glibc's defaults: the first block is mapped and unmapped on free; the second comes from fresh heap pages
    # (glibc raised its thresholds on that free) and faults all of them in again
    assert default["faults"][1] >= PAGES_16_MIB * 0.9, default
    # kept: only the first allocation faults its pages in; the next ones reuse them
    assert kept["kept"] is True and kept["faults"][0] >= PAGES_16_MIB * 0.9, kept
    assert max(kept["faults"][1:]) < PAGES_16_MIB * 0.05, kept


def test_steps_that_free_all_their_activations_stop_faulting_once_kept() -> None:
    kept = _run(STEPS)
    # 20 steps of 8 tensors of 2,048 pages each: at most two steps' worth of fresh pages in all (at glibc's
    # defaults the freed top of the heap can be trimmed every step: up to 20 steps' worth)
    assert kept["kept"] is True and kept["faults"] < 2 * 8 * 2048, kept
