"""The threads that run the app's forwards: one per core, each running
PyTorch with one intra-op thread (a forward per core, side by side, for
requests that queue), and one with every thread (a lone request's forward).

Forwards run on these few threads only, never on Gradio's 40 worker threads:
glibc's malloc gives each thread that allocates an arena of its own and keeps
a forward's freed activations there for that thread, so forwards spread over
many threads held that memory many times over (issue 13: resident memory grew
from 3.9 to 5.8 GB under 24 clients).

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

    def __init__(self, count: int, wide_threads: int | None = None):
        if count < 1:
            raise ValueError("CoreWorkers needs at least 1 thread.")
        self.count = count
        self._pool = ThreadPoolExecutor(count, thread_name_prefix="forward-core")
        self._wide = ThreadPoolExecutor(1, thread_name_prefix="forward-wide")
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
        wide = wide_threads or default
        self._wide.submit(lambda: (torch.get_num_threads(), torch.set_num_threads(wide))).result()
        self.wide_threads = wide

    def run(self, fn: Callable[..., R], *args, wide: bool = False) -> R:
        """``fn(*args)`` on a single-threaded worker (one that is free, when
        fewer than ``count`` calls run at once), or with ``wide`` on the
        worker with ``wide_threads`` threads; blocks until it returns."""
        return (self._wide if wide else self._pool).submit(fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._wide.shutdown(wait=False)
