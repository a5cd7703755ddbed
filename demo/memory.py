"""Handing freed memory back to the kernel.

glibc's malloc keeps the blocks a program frees inside its heaps for later
use; a dropped model's weights become such blocks, and the process's resident
memory would keep them until they happen to be reused.
:func:`release_free_memory` hands their pages back; the app calls it after
loading a model and when a model it dropped is gone (demo/service.py,
ModelCache). tests/test_memory.py and tests/test_reliability.py check the
effect; the figures are in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import ctypes
import sys


def _glibc():
    """The process's C library if it is glibc (it has ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def release_free_memory() -> bool:
    """Hand the pages of the heaps' free blocks back to the kernel (glibc's
    ``malloc_trim(0)``, every arena), e.g. after a model was dropped. Returns
    whether any memory was released (False also where the C library is not
    glibc)."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
