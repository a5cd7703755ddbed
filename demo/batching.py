"""Micro-batching: many threads each ask for one result, and one call of a
batch function answers several of them.

The app's requests arrive on Gradio's worker threads, one image each, and
while one forward runs the next requests can only wait: :class:`MicroBatcher`
lets them queue and answers all that are waiting with the next call, instead
of one forward (and one more wait) each. No thread of its own: the first
waiting caller that finds a free slot runs the next batch (perhaps other
callers' requests), and every caller returns as soon as its own result is
there.

No Gradio and no torch here; tests drive it with plain functions.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Generic, Hashable, Sequence, TypeVar

T, R = TypeVar("T"), TypeVar("R")


class _Request(Generic[T, R]):
    __slots__ = ("key", "item", "result", "error", "done")

    def __init__(self, key: Hashable, item: T):
        self.key = key
        self.item = item
        self.result: R | None = None
        self.error: BaseException | None = None
        self.done = False


class MicroBatcher(Generic[T, R]):
    """Serve concurrent :meth:`submit` calls in batches.

    ``run_batch(key, items)`` gets up to ``max_batch`` items that were
    submitted with the same ``key`` (items of one key must be batchable
    together: same model, same input size) and returns one result per item,
    in order. At most ``max_concurrent`` batches run at once; requests wait
    in arrival order and a batch is formed around the oldest one.

    A batch takes whatever has queued while the previous one ran; under load
    that is most of the clients. ``max_wait_s`` (default 0: no waiting): how
    long a batch smaller than the previous one of its key waits for more
    requests. Clients answered by one batch send their next requests nearly
    together, and without a wait the first to arrive runs alone and the rest
    after it (batches of 1, 7, 1, 7, ...); a wait merges them, at the cost of
    up to ``max_wait_s`` for a lone request after a busy spell (once: after a
    batch of one nothing waits). On 2 cores, where a batch costs about what
    its images cost one by one, a 50 ms wait changed the app's throughput by
    less than the noise, so the app does not wait.

    When a batch fails, its items are run again one by one, so that an item
    that cannot be processed fails alone and the others get their results.
    """

    def __init__(self, run_batch: Callable[[Hashable, list[T]], Sequence[R]], max_batch: int = 8,
                 max_wait_s: float = 0.0, max_concurrent: int = 1):
        if max_batch < 1 or max_concurrent < 1:
            raise ValueError("max_batch and max_concurrent must be at least 1.")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_concurrent = max_concurrent
        self._run_batch = run_batch
        self._pending: deque[_Request[T, R]] = deque()
        self._running = 0
        self._last_size: dict[Hashable, int] = {}  # size of the previous batch of each key
        self._cond = threading.Condition()
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # the most recent batches, for benchmarks and tests

    def submit(self, key: Hashable, item: T) -> R:
        """Block until ``item`` has been processed (in some batch); its result,
        or the exception its batch (or its retry alone) raised."""
        request: _Request[T, R] = _Request(key, item)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        while True:
            with self._cond:
                while not request.done and (self._running >= self.max_concurrent or not self._pending):
                    self._cond.wait()
                if request.done:
                    break
                self._running += 1
                batch = self._take_batch()
            try:
                if batch:
                    self._run(batch)
            finally:
                with self._cond:
                    for finished in batch:
                        finished.done = True
                    self._running -= 1
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error
        return request.result

    @property
    def waiting(self) -> int:
        """Requests submitted and not yet taken into a batch."""
        with self._cond:
            return len(self._pending)

    def _take_batch(self) -> list[_Request[T, R]]:
        """Up to ``max_batch`` pending requests with the oldest one's key,
        oldest first, removed from the queue (empty when another runner took
        them while this one waited). Called with the lock held."""
        if self.max_wait_s > 0:
            key = self._pending[0].key
            wanted = min(self.max_batch, self._last_size.get(key, 1))
            deadline = time.monotonic() + self.max_wait_s
            while self._pending and sum(r.key == key for r in self._pending) < wanted:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        if not self._pending:
            return []
        key = self._pending[0].key
        batch, rest = [], deque()
        for request in self._pending:
            if request.key == key and len(batch) < self.max_batch:
                batch.append(request)
            else:
                rest.append(request)
        self._pending = rest
        self._last_size[key] = len(batch)
        self.batch_sizes.append(len(batch))
        return batch

    def _run(self, batch: list[_Request[T, R]]) -> None:
        """Fill in every request's result or error; raises only for what is
        not an ``Exception`` (KeyboardInterrupt, SystemExit)."""
        try:
            results = list(self._run_batch(batch[0].key, [r.item for r in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"The batch function returned {len(results)} results for {len(batch)} items.")
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            for request in batch:  # find the item that fails; the others still get their results
                self._run([request])
            return
        except BaseException as error:
            for request in batch:
                request.error = error
            raise
        for request, result in zip(batch, results):
            request.result = result
