"""Process-level tuning for CPU work: keep freed memory in the process instead of returning it.

PyTorch's CPU allocator asks glibc's ``malloc`` for every tensor. glibc serves blocks larger than
32 MB (a 64×64×32 feature map with 48 channels and batch 2 is 50 MB) with fresh ``mmap`` calls and
unmaps them on free, so every training step makes the kernel fault in and zero the same gigabytes again:
at 64×64×32 we measured ~400,000 minor page faults and 1.3 CPU-seconds of kernel time per H2ASeg step
(`benchmarks/results/speed_cpu.md`). :func:`keep_freed_memory` tells glibc to serve all blocks from its
heap and never trim it, so after the first steps the memory is reused without faults (4,100–4,800 per
step).
The price: the process keeps its high-water mark until it ends, and the heap may hold some fragmentation
(peak resident memory of an eager step, `speed_cpu.md`: 2.0 GB against 1.7 GB at 64×64×32, 11.8 GB
against 8.0 GB at 128×128×64). Other C libraries (musl, macOS) are left alone;
``H2ASEG_SYSTEM_MALLOC=1`` opts out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed memory (no mmap per large block, no trimming); True when applied.

    Safe to call more than once and before or after torch is imported; it affects later allocations.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("H2ASEG_SYSTEM_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return _applied
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # glibc stores the trim threshold as size_t: -1 becomes SIZE_MAX, i.e. never trim the heap.
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
    return _applied
