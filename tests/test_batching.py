"""The classification micro-batcher (demo/batching.py) and its use by the
service: every caller gets its own result, batches never mix models or exceed
their size, and an item that fails fails alone. No wall-clock assertions:
batches are made deterministic by holding the first one until the others
have queued."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import ROOT
from demo import images
from demo.batching import MicroBatcher
from demo.service import InferenceService, Settings
from demo.cores import CoreWorkers
from demo.ui import Callbacks, build_demo, classify_concurrency

EXAMPLES_DIR = ROOT / "assets" / "examples"
BOUND_S = 30  # how long a test waits for threads to get somewhere before it fails (never a timing check)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting for {what}.")
        time.sleep(0.005)


class Recorder:
    """A batch function that logs its batches and holds the first one until
    released, so that later submissions queue up behind it."""

    def __init__(self, fail_on=()):
        self.batches: list[tuple] = []
        self.release = threading.Event()
        self.fail_on = set(fail_on)
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def __call__(self, key, items):
        with self._lock:
            self.batches.append((key, list(items)))
            first = len(self.batches) == 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if first and not self.release.wait(BOUND_S):
                raise RuntimeError("never released")
            bad = self.fail_on.intersection(items)
            if bad:
                raise ValueError(f"cannot process {sorted(bad)}")
            return [(key, item * 10) for item in items]
        finally:
            with self._lock:
                self.active -= 1


def submit_all(batcher, recorder, requests, hold_first=True):
    """Submit (key, item) pairs from one thread each, the first alone; returns
    each request's result or exception, in order."""
    def one(request):
        try:
            return batcher.submit(*request)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            return error

    with ThreadPoolExecutor(len(requests)) as pool:
        first = pool.submit(one, requests[0])
        if hold_first:
            wait_until(lambda: len(recorder.batches) == 1, "the first batch to start")
        rest = []
        for request in requests[1:]:
            rest.append(pool.submit(one, request))
        wait_until(lambda: batcher.waiting == len(requests) - 1, "every request to queue")
        recorder.release.set()
        return [first.result(BOUND_S)] + [f.result(BOUND_S) for f in rest]


def test_every_caller_gets_its_own_result_and_batches_fill_up():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=8)
    requests = [("model", i) for i in range(21)]
    results = submit_all(batcher, recorder, requests)
    assert results == [("model", i * 10) for i in range(21)]
    # The first ran alone; the 20 that queued behind it ran as 8 + 8 + 4, oldest first.
    assert [len(items) for _, items in recorder.batches] == [1, 8, 8, 4]
    assert sorted(i for _, items in recorder.batches for i in items) == list(range(21))
    assert list(batcher.batches) == [(1, False), (8, False), (8, False), (4, False)]
    assert batcher.waiting == 0


def test_batches_never_mix_keys():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=8)
    requests = [("a", 0)] + [("a" if i % 3 else "b", i) for i in range(1, 13)]
    results = submit_all(batcher, recorder, requests)
    assert results == [(key, item * 10) for key, item in requests]
    for key, items in recorder.batches:
        assert all(dict((i, k) for k, i in requests)[item] == key for item in items)
    assert len(recorder.batches) == 3  # a alone, then the queued a's together, then the b's together


def test_an_item_that_fails_fails_alone():
    recorder = Recorder(fail_on={5})
    batcher = MicroBatcher(recorder, max_batch=8)
    results = submit_all(batcher, recorder, [("model", i) for i in range(9)])
    assert isinstance(results[5], ValueError) and "cannot process [5]" in str(results[5])
    assert [r for i, r in enumerate(results) if i != 5] == [("model", i * 10) for i in range(9) if i != 5]
    # The failed batch of 8 was retried one item at a time.
    assert [len(items) for _, items in recorder.batches] == [1, 8] + [1] * 8
    # And the batcher keeps working.
    assert batcher.submit("model", 7) == ("model", 70)


def test_a_batch_function_returning_the_wrong_number_of_results_is_an_error_for_each():
    batcher = MicroBatcher(lambda key, items: [], max_batch=4)
    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        batcher.submit("k", 1)


def test_at_most_one_batch_per_lane_runs_at_once():
    for lanes in (1, 2):
        started = threading.Barrier(lanes + 1)
        gate = threading.Event()
        active = []

        def run(key, items):
            active.append(1)
            if len(active) <= lanes:
                started.wait(BOUND_S)
                gate.wait(BOUND_S)
            return items

        batcher = MicroBatcher(run, max_batch=1, lanes=lanes)
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(batcher.submit, "k", i) for i in range(6)]
            started.wait(BOUND_S)  # a batch per lane is running...
            wait_until(lambda: batcher.waiting == 6 - lanes, "the others to queue")
            assert len(active) == lanes  # ...and no more
            gate.set()
            assert [f.result(BOUND_S) for f in futures] == list(range(6))


def test_a_lone_request_runs_wide_and_those_that_queue_behind_it_share_the_lanes():
    """lanes=2, wide_lanes=2 (the app on 2 cores): a request alone holds both
    lanes, nothing starts beside it, and the 5 that queued meanwhile run in
    single-lane batches side by side, each taking its share of what waits:
    3 (half of 5) on one lane; 1 (half of 2) on the other, then the last."""
    release, calls = threading.Event(), []

    def run(key, items, wide):
        calls.append((list(items), wide))
        if len(calls) == 1:
            release.wait(BOUND_S)  # hold the wide batch while the others queue
        elif len(calls) == 2:  # hold the first lane until the other lane has run twice
            wait_until(lambda: len(calls) == 4, "the other lane to take the rest")
        return [item * 10 for item in items]

    batcher = MicroBatcher(run, max_batch=8, lanes=2, wide_lanes=2)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher.submit, "k", 0)
        wait_until(lambda: len(calls) == 1, "the first batch to start")
        rest = [pool.submit(batcher.submit, "k", i) for i in range(1, 6)]
        wait_until(lambda: batcher.waiting == 5, "the others to queue")
        assert len(calls) == 1  # the wide batch holds both lanes: nothing started beside it
        release.set()
        assert [first.result(BOUND_S)] + [f.result(BOUND_S) for f in rest] == [i * 10 for i in range(6)]
    # (The five queued in whatever order their threads reached the batcher.)
    assert [(len(items), wide) for items, wide in calls] == [(1, True), (3, False), (1, False), (1, False)]
    assert sorted(item for items, _ in calls[1:] for item in items) == [1, 2, 3, 4, 5]
    assert list(batcher.batches) == [(1, True), (3, False), (1, False), (1, False)]
    # Idle again: the next lone request gets both lanes.
    assert batcher.submit("k", 7) == 70
    assert calls[-1] == ([7], True)


def test_a_request_that_arrives_while_one_lane_is_busy_starts_on_the_other():
    gates = {0: threading.Event(), 1: threading.Event()}  # items whose batch is held until released
    calls = []

    def run(key, items, wide):
        calls.append((list(items), wide))
        for item in items:
            if item in gates and not gates[item].wait(BOUND_S):
                raise RuntimeError("never released")
        return [item * 10 for item in items]

    batcher = MicroBatcher(run, max_batch=8, lanes=2, wide_lanes=2)
    with ThreadPoolExecutor(4) as pool:
        lone = pool.submit(batcher.submit, "k", 0)  # alone: wide, held
        wait_until(lambda: len(calls) == 1, "the lone request to start")
        pair = [pool.submit(batcher.submit, "k", i) for i in (1, 2)]
        wait_until(lambda: batcher.waiting == 2, "two requests to queue")
        gates[0].set()  # the two that queued take a lane each: [1] (held) and [2]
        assert pair[1].result(BOUND_S) == 20
        assert sorted(calls[1:]) == [([1], False), ([2], False)]
        # One lane still busy with [1]: a new request starts at once on the other, single-threaded.
        assert pool.submit(batcher.submit, "k", 3).result(BOUND_S) == 30
        assert calls[-1] == ([3], False) and not pair[0].done()
        gates[1].set()
        assert lone.result(BOUND_S) == 0 and pair[0].result(BOUND_S) == 10


def test_an_error_that_is_not_an_exception_reaches_every_caller_of_its_batch():
    """A batch of 1, 2, 3 fails on 3 and is retried item by item; the retry
    of 2 raises SystemExit: 3 gets that error too, not a missing result (None)."""
    recorder = Recorder(fail_on={3})

    def run(key, items):
        if items == [2]:
            raise SystemExit("stopping")
        return recorder(key, items)

    batcher = MicroBatcher(run, max_batch=8)

    def outcome(item):
        try:
            return batcher.submit("k", item)
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            return error

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(outcome, 0)
        wait_until(lambda: len(recorder.batches) == 1, "the first batch to start")
        rest = []
        for item in (1, 2, 3):  # queued in this order
            rest.append(pool.submit(outcome, item))
            wait_until(lambda: batcher.waiting == len(rest), "the request to queue")
        recorder.release.set()
        results = [first.result(BOUND_S)] + [f.result(BOUND_S) for f in rest]
    assert results[0] == ("k", 0)
    # 1's caller ran the batch, so the SystemExit goes up through it; 2 raised it; 3 is told of it.
    assert all(isinstance(result, SystemExit) for result in results[1:])


def test_lanes_are_checked():
    with pytest.raises(ValueError):
        MicroBatcher(lambda key, items: items, lanes=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda key, items, wide: items, lanes=2, wide_lanes=3)


# ---------------------------------------------------------------- a batch over the cores

def test_core_workers_run_single_threaded_and_leave_the_default_alone():
    default = torch.get_num_threads()
    cores = CoreWorkers(2)
    try:
        assert torch.get_num_threads() == default  # the caller's setting is untouched
        started, both = [], threading.Barrier(2)

        def where(item):
            both.wait(BOUND_S)  # two calls at once run on two different workers
            started.append((threading.current_thread().name, torch.get_num_threads()))
            return item * 2

        with ThreadPoolExecutor(2) as pool:
            assert [f.result(BOUND_S) for f in [pool.submit(cores.run, where, i) for i in (1, 2)]] == [2, 4]
        assert len({name for name, _ in started}) == 2
        assert all(name.startswith("forward-core") and threads == 1 for name, threads in started)
        # A thread started now still adopts the process-wide default.
        adopted = []
        thread = threading.Thread(target=lambda: adopted.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert adopted == [default]
    finally:
        cores.close()


# ---------------------------------------------------------------- the service's classification

@pytest.fixture(scope="module")
def service():
    return InferenceService(Settings(torch_threads=2))


def test_a_batched_forward_gives_each_image_its_own_probabilities(service):
    model = service.models.get("efficientnet_lite0", True)
    transform = __import__("models").create_transform(model.spec)
    inputs = [transform(images.load_image(EXAMPLES_DIR / name)) for name in ("cat.jpg", "espresso.jpg", "rocket.jpg")]
    batched = service._run_batch(("classify",), [(model, x) for x in inputs], wide=False)  # on a core worker
    for x, (probabilities, _, batch_size) in zip(inputs, batched):
        (alone, _, one), = service._run_batch(("classify",), [(model, x)])
        assert batch_size == 3 and one == 1
        assert torch.allclose(probabilities, alone, atol=1e-5)


def test_swin_forwards_share_the_classifications_queue(service, monkeypatch):
    """The views' forwards go through the same batcher, as the kind "swin"."""
    kinds = []
    run = service.classifier._run_batch

    def recording(key, items, **options):
        kinds.append(key[0])
        return run(key, items, **options)

    monkeypatch.setattr(service.classifier, "_run_batch", recording)
    forward = service.swin_forward(images.load_image(EXAMPLES_DIR / "cat.jpg"), "swin_cifar")
    service.classify(images.load_image(EXAMPLES_DIR / "cat.jpg"), "swin_cifar")
    assert kinds == ["swin", "classify"] and len(forward.records) == sum(forward.model.depths)


def test_concurrent_classifications_are_batched_and_each_gets_its_image_label(service, monkeypatch):
    names = ["espresso.jpg", "cat.jpg", "espresso.jpg", "rocket.jpg", "cat.jpg", "espresso.jpg"]
    pictures = [images.load_image(EXAMPLES_DIR / name) for name in names]
    alone = [service.classify(p, "efficientnet_lite0", 1) for p in pictures]
    assert all(r.batch_size == 1 for r in alone)

    # Hold the first forward until the others have queued behind it.
    release, run = threading.Event(), service.classifier._run_batch
    calls = []

    def held(key, items, wide):
        calls.append((len(items), wide))
        if len(calls) == 1:
            release.wait(BOUND_S)
        elif len(calls) == 2:  # until the other lane has run twice
            wait_until(lambda: len(calls) == 4, "the other lane to take the rest")
        return run(key, items, wide=wide)

    monkeypatch.setattr(service.classifier, "_run_batch", held)
    with ThreadPoolExecutor(len(pictures)) as pool:
        first = pool.submit(service.classify, pictures[0], "efficientnet_lite0", 1)
        wait_until(lambda: len(calls) == 1, "the first forward")
        rest = [pool.submit(service.classify, p, "efficientnet_lite0", 1) for p in pictures[1:]]
        wait_until(lambda: service.classifier.waiting == len(pictures) - 1, "the other requests to queue")
        release.set()
        together = [first.result(BOUND_S)] + [f.result(BOUND_S) for f in rest]
    # The first alone with both threads; the 5 that queued on the two cores: 3 on one, 1 and 1 on the other.
    assert calls == [(1, True), (3, False), (1, False), (1, False)]
    assert together[0].batch_size == 1  # (the others queued in whatever order their threads ran)
    assert sorted(r.batch_size for r in together[1:]) == [1, 1, 3, 3, 3]
    assert [list(r.probabilities) for r in together] == [list(r.probabilities) for r in alone]
    for single, batched in zip(alone, together):
        (label, p1), = single.probabilities.items()
        assert batched.probabilities[label] == pytest.approx(p1, abs=1e-5)


def test_the_page_says_when_a_forward_served_several_requests(service, monkeypatch):
    callbacks = Callbacks(service)
    result = service.classify(images.load_image(EXAMPLES_DIR / "cat.jpg"), "efficientnet_lite0", 3)
    monkeypatch.setattr(service, "classify", lambda *a, **k: type(result)(
        result.probabilities, 120.0, result.model_name, result.pretrained, batch_size=4))
    _, details, _, _ = callbacks.classify_ui(images.load_image(EXAMPLES_DIR / "cat.jpg"), "efficientnet_lite0", 3)
    assert "the model took **120 ms** for a batch of 4 images sent at once" in details


def test_classify_and_view_events_share_one_limit(service, monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "")  # (restored to its state before the test at its end)
    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY")
    demo = build_demo(service)
    # Gradio's per-event monitoring summary is rebuilt every 1000 events, not after each one.
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == 1000
    functions = {fn.api_name: fn for fn in demo.fns.values()}
    limit = service.classifier.max_batch * service.classifier.lanes  # 16 on 2 lanes
    assert limit == 16 and classify_concurrency(InferenceService(Settings(torch_threads=8))) == 16  # never more
    # The API and the page: their forwards wait in the service's batcher, in arrival order.
    for name in ("classify", "classify_ui", "swin_views", "swin_views_ui"):
        assert (functions[name].concurrency_id, functions[name].concurrency_limit) == ("model", limit), name
