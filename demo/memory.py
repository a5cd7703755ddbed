"""The C library's memory allocator, set for a process that runs forwards
over and over.

A forward allocates its activations (megabytes to tens of megabytes each)
and frees them at the end. glibc's malloc, as it comes, gives each thread
that runs forwards an arena of 64 MB heaps, and unmaps a heap as soon as it
is empty; so the next forward touches new pages, and the kernel zeroes each
on its first touch (a page fault). :func:`configure_malloc` has every thread
allocate from the one main heap (``M_ARENA_MAX`` 1), keeps up to 256 MB free
at its top for the next forward (``M_TRIM_THRESHOLD``), and still maps
blocks over 32 MB (``M_MMAP_THRESHOLD``, glibc's largest) on their own, so
that a one-off large buffer (a huge upload's pixels) goes back to the kernel
when freed.

Measured on the 2-core machine of benchmarks/RESULTS.md, single-threaded
forwards on a core worker as the app runs queued requests (median of 4, after
2 to warm up), as glibc comes -> set here: EfficientNet-Lite0 at batch 3, 73
ms and 7,820 page faults per forward -> 47 ms and none; at batch 8, 272 ms
and 26,629 -> 171 ms and 18,986 (its largest activations are over 32 MB).
Swin-T at batch 8: 44,758 page faults -> 9,409-19,369.

Off by default (app.py turns it on with ``APP_TUNE_MALLOC=1``): with it, the
peak resident memory of tests/test_reliability.py's model-loading sequence
(models loaded and dropped one after another) reached 2,629 MB in 1 of 4
runs (1,973-1,978 MB in the others), against 1,970-1,977 MB in 6 of 6 runs
without; a memory-bound Space cannot afford that.

Freed blocks inside the heap stay with the process until reused;
:func:`release_free_memory` hands their pages back, and the app calls it when
a model it dropped is gone (demo/service.py, ModelCache).
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 32 * 2**20  # the most glibc accepts (half its heap size)
TRIM_THRESHOLD_BYTES = 256 * 2**20


def _glibc():
    """The process's C library if it is glibc (it has ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def configure_malloc() -> bool:
    """Set glibc's malloc as described above; call it before the process
    starts threads (an arena, once a thread has one, stays). Returns whether
    it was set: False where the C library is not glibc, which keeps its own
    behaviour."""
    libc = _glibc()
    if libc is None:
        return False
    settings = ((M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)


def release_free_memory() -> bool:
    """Hand the pages of the heap's free blocks back to the kernel (glibc's
    ``malloc_trim(0)``), e.g. after a model was dropped. Returns whether
    any memory was released (False also where the C library is not glibc)."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
