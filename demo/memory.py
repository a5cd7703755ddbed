"""The C library's memory allocator, set for a process that runs forwards
over and over.

A forward allocates its activations (tens of megabytes each at batch 8) and
frees them at the end. glibc's malloc, as it comes, serves the largest from
fresh ``mmap`` pages and hands them back on ``free``, and the threads that run
forwards each get an arena of 64 MB heaps that are unmapped as soon as they
are empty; either way the next forward touches new pages, and the kernel
zeroes each on its first touch (page faults: 10,000-50,000 per forward
here). Measured on the 2-core machine of benchmarks/RESULTS.md, a
single-threaded EfficientNet-Lite0 forward at batch 3 took 106-118 ms that
way and 57 ms once its memory was reused; at batch 8, 255-300 ms against
157 ms.

:func:`configure_malloc` has every thread allocate from one heap
(``M_ARENA_MAX`` 1), never from separate ``mmap`` pages (``M_MMAP_MAX`` 0),
and keep up to 512 MB free at the top of that heap (``M_TRIM_THRESHOLD``)
instead of returning it, so that what one forward freed serves the next. The
process keeps the memory of its busiest moment (the models it has loaded
and its largest batch), which it would need again at the next busy moment
anyway.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD_BYTES = 512 * 2**20


def configure_malloc() -> bool:
    """Set glibc's malloc as described above; call it before the process
    starts threads (an arena, once a thread has one, stays). Returns whether
    it was set: False where the C library is not glibc (no ``mallopt``, or
    one that refuses), which keeps its own behaviour."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
