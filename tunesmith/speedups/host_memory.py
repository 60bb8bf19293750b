"""On CPU training, keep freed host memory in the process for the next step instead of giving it back.

glibc's malloc hands blocks above its mmap threshold back to the kernel when they are freed, and trims the
top of its heap above the trim threshold. A training step frees and allocates the same activation-sized
tensors (megabytes each) hundreds of times, so at the defaults each comes back as fresh pages the kernel
must fault in and zero. With both thresholds raised, a step takes a small fraction of those page faults at
the same peak RSS: what is kept is what the next step allocates again (figures in bench/RESULTS.md).

The setting is process-wide and only raises thresholds; on other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20
"""glibc's upper bound for M_MMAP_THRESHOLD on 64-bit: larger blocks (e.g. a vocabulary's logits) still map."""
TRIM_THRESHOLD = 2**31 - 1
"""Free memory at the heap's top that glibc keeps before trimming (the largest value the C int takes)."""


def keep_freed_host_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; False where the C library is not glibc or refuses."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mmap_raised = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX))
    return mmap_raised and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
