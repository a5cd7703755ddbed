"""Threads that each run PyTorch with one intra-op thread: a forward per
core, side by side, for requests that queue.

On a small CPU the threads of one forward wait for each other after every
operation (and spin while they wait); forwards of separate images need no
such meeting: single-threaded forwards side by side take less time per
image than one forward with every thread (benchmarks/RESULTS.md, "forwards
side by side, one per core"), which is what lets 8 clients get more than one
client in a row. A lone request still gets one forward with every thread,
for the shortest wait (demo/batching.py decides which).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import torch

R = TypeVar("R")


class CoreWorkers:
    """``count`` worker threads, each running PyTorch with one intra-op thread."""

    def __init__(self, count: int):
        if count < 1:
            raise ValueError("CoreWorkers needs at least 1 thread.")
        self.count = count
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="forward-core")
        # torch.set_num_threads is per thread for OpenMP, but it also sets the
        # default that a thread adopts on its first parallel operation (which
        # would undo an earlier setting): so each worker makes that first use
        # happen, then takes one thread; the calling thread then puts the
        # process-wide default back.
        default = torch.get_num_threads()
        ready = threading.Barrier(count)

        def one_thread() -> None:
            torch.get_num_threads()
            torch.set_num_threads(1)
            ready.wait()  # so that every worker thread gets one of these

        for future in [self._pool.submit(one_thread) for _ in range(count)]:
            future.result()
        torch.set_num_threads(default)

    def run(self, fn: Callable[..., R], *args) -> R:
        """``fn(*args)`` on a worker (one that is free, when fewer than
        ``count`` calls run at once); blocks until it returns."""
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
