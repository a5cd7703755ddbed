"""Micro-batching: many threads each ask for one result, and one call of a
batch function answers several of them.

The app's requests arrive on Gradio's worker threads, one image each, and
while one forward runs the next requests can only wait: :class:`MicroBatcher`
lets them queue and answers all that are waiting with the next call, instead
of one forward (and one more wait) each. No thread of its own: when a lane
is free, the caller of the oldest waiting request runs the next batch (its
own request and others'), and every caller returns as soon as its own
result is there.

No Gradio and no torch here; tests drive it with plain functions.
"""
from __future__ import annotations

import threading
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
    """Serve concurrent :meth:`submit` calls in batches, on ``lanes`` at once.

    ``run_batch(key, items)`` gets up to ``max_batch`` items that were
    submitted with the same ``key`` (items of one key must be batchable
    together: same model, same input size) and returns one result per item,
    in order. Requests wait in arrival order and a batch is formed around the
    oldest one; at most ``lanes`` batches run at once, and a batch takes its
    share of what waits: the waiting requests of its key divided among the
    lanes (all of them when there is one lane), so that lanes coming free
    soon after find work and no request waits behind one long batch.

    ``wide_lanes`` > 1 (at most ``lanes``): a batch that finds nothing else
    running and nothing else waiting holds ``wide_lanes`` lanes instead of
    one, and ``run_batch`` is told so: it is called as
    ``run_batch(key, items, wide=...)``. The app uses this to give a lone
    request every core, and requests that queue one single-threaded forward
    per core; a wide batch blocks the lanes it holds, so the cores are never
    asked for more threads than they have.

    When a batch fails, its items are run again one by one, so that an item
    that cannot be processed fails alone and the others get their results.
    """

    def __init__(self, run_batch: Callable[..., Sequence[R]], max_batch: int = 8,
                 lanes: int = 1, wide_lanes: int = 1):
        if max_batch < 1 or lanes < 1:
            raise ValueError("max_batch and lanes must be at least 1.")
        if not 1 <= wide_lanes <= lanes:
            raise ValueError("wide_lanes must be between 1 and lanes.")
        self.max_batch = max_batch
        self.lanes = lanes
        self.wide_lanes = wide_lanes
        self._run_batch = run_batch
        self._pending: deque[_Request[T, R]] = deque()
        self._busy_lanes = 0
        self._cond = threading.Condition()
        # The most recent batches as (size, wide), for benchmarks and tests.
        self.batches: deque[tuple[int, bool]] = deque(maxlen=1000)

    def submit(self, key: Hashable, item: T) -> R:
        """Block until ``item`` has been processed (in some batch); its result,
        or the exception its batch (or its retry alone) raised."""
        request: _Request[T, R] = _Request(key, item)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
        while True:
            with self._cond:
                # The oldest waiting request's caller runs the next batch (which
                # holds it), so that no caller runs a batch without its own
                # request and waits for that one after its own result came.
                while not request.done and (self._busy_lanes >= self.lanes or not self._pending
                                            or self._pending[0] is not request):
                    self._cond.wait()
                if request.done:
                    break
                self._busy_lanes += 1  # this runner's lane, held while it forms its batch
                batch = self._take_batch()
                # Alone: nothing else waits, and the lanes a wide batch needs are free.
                wide = (self.wide_lanes > 1 and bool(batch) and not self._pending
                        and self._busy_lanes - 1 + self.wide_lanes <= self.lanes)
                held = self.wide_lanes if wide else 1
                self._busy_lanes += held - 1
                if batch:
                    self.batches.append((len(batch), wide))
                if self._pending:  # a new oldest request: its caller may run the next batch
                    self._cond.notify_all()
            try:
                if batch:
                    self._run(batch, wide)
            finally:
                with self._cond:
                    for finished in batch:
                        finished.done = True
                    self._busy_lanes -= held
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
        """The oldest pending request and others of its key, oldest first: up
        to ``max_batch``, and no more than their share of the lanes;
        removed from the queue (empty when another runner took them while this
        one waited). Called with the lock held and this runner's lane counted
        busy."""
        if not self._pending:
            return []
        key = self._pending[0].key
        same_key = sum(r.key == key for r in self._pending)
        limit = min(self.max_batch, -(-same_key // self.lanes))
        batch, rest = [], deque()
        for request in self._pending:
            if request.key == key and len(batch) < limit:
                batch.append(request)
            else:
                rest.append(request)
        self._pending = rest
        return batch

    def _run(self, batch: list[_Request[T, R]], wide: bool) -> None:
        """Fill in every request's result or error; raises only for what is
        not an ``Exception`` (KeyboardInterrupt, SystemExit)."""
        try:
            key, items = batch[0].key, [r.item for r in batch]
            results = list(self._run_batch(key, items, wide=wide) if self.wide_lanes > 1
                           else self._run_batch(key, items))
            if len(results) != len(batch):
                raise RuntimeError(f"The batch function returned {len(results)} results for {len(batch)} items.")
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            for index, request in enumerate(batch):  # find the item that fails; the others still get their results
                try:
                    self._run([request], wide)
                except BaseException as fatal:  # not an Exception (SystemExit): it ends the batch for the rest too
                    for rest in batch[index + 1:]:
                        rest.error = fatal
                    raise
            return
        except BaseException as error:
            for request in batch:
                request.error = error
            raise
        for request, result in zip(batch, results):
            request.result = result
