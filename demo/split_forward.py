"""A batch's forward spread over the CPU cores: one single-threaded forward
per core, side by side, instead of one forward whose threads share each
operation.

On a small CPU the threads of one forward wait for each other after every
operation (and spin while they wait); forwards of separate images need no
such meeting. On the 2-core machine of benchmarks/RESULTS.md, two
single-threaded EfficientNet-Lite0 forwards of 2 images each serve about 1.4
times the images per second of one 2-thread forward of 4 (Swin-T: 1.07
times); a lone image still gets every thread, for the shortest wait.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence, TypeVar

import torch

T, R = TypeVar("T"), TypeVar("R")


class SplitForward:
    """``cores`` worker threads, each running PyTorch with one intra-op thread."""

    def __init__(self, cores: int):
        if cores < 2:
            raise ValueError("Splitting needs at least 2 cores.")
        self.cores = cores
        self._pool = ThreadPoolExecutor(cores, thread_name_prefix="forward-core")
        # torch.set_num_threads is per thread for OpenMP, but it also sets the
        # default that a thread adopts on its first parallel operation (which
        # would undo an earlier setting): so each worker makes that first use
        # happen, then takes one thread; the calling thread then puts the
        # process-wide default back.
        default = torch.get_num_threads()
        ready = threading.Barrier(cores)

        def one_thread() -> None:
            torch.get_num_threads()
            torch.set_num_threads(1)
            ready.wait()  # so that every worker thread gets one of these

        for future in [self._pool.submit(one_thread) for _ in range(cores)]:
            future.result()
        torch.set_num_threads(default)

    def map(self, fn: Callable[[Sequence[T]], Sequence[R]], items: Sequence[T]) -> list[R]:
        """``fn`` on contiguous chunks of ``items`` (at most one chunk per
        core), side by side; the results in the order of ``items``."""
        chunks = min(self.cores, len(items))
        bounds = [len(items) * i // chunks for i in range(chunks + 1)]
        futures = [self._pool.submit(fn, items[start:end]) for start, end in zip(bounds, bounds[1:])]
        return [result for future in futures for result in future.result()]

    def close(self) -> None:
        self._pool.shutdown(wait=False)
