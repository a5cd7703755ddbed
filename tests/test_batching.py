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
from demo.split_forward import SplitForward
from demo.ui import Callbacks, build_demo

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
    assert list(batcher.batch_sizes) == [1, 8, 8, 4]
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


def test_at_most_max_concurrent_batches_run_at_once():
    for max_concurrent in (1, 2):
        started = threading.Barrier(max_concurrent + 1)
        gate = threading.Event()
        active = []

        def run(key, items):
            active.append(1)
            if len(active) <= max_concurrent:
                started.wait(BOUND_S)
                gate.wait(BOUND_S)
            return items

        batcher = MicroBatcher(run, max_batch=1, max_concurrent=max_concurrent)
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(batcher.submit, "k", i) for i in range(6)]
            started.wait(BOUND_S)  # max_concurrent batches are running...
            wait_until(lambda: batcher.waiting == 6 - max_concurrent, "the others to queue")
            assert len(active) == max_concurrent  # ...and no more
            gate.set()
            assert [f.result(BOUND_S) for f in futures] == list(range(6))


def test_after_a_batch_of_n_the_next_one_waits_for_n_requests_then_a_lone_one_runs_alone():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch=8, max_wait_s=BOUND_S)
    submit_all(batcher, recorder, [("k", i) for i in range(5)])  # batches of 1, then 4
    # Four clients answered together send again, one after the other: the
    # first waits for the other three instead of running alone.
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for i in range(5, 9):
            futures.append(pool.submit(batcher.submit, "k", i))
            wait_until(lambda: batcher.waiting == len(futures) or len(recorder.batches) == 3, "the request to queue")
        assert [f.result(BOUND_S) for f in futures] == [("k", i * 10) for i in range(5, 9)]
    assert [len(items) for _, items in recorder.batches] == [1, 4, 4]

    recorder = Recorder()
    quick = MicroBatcher(recorder, max_batch=8, max_wait_s=0.01)
    submit_all(quick, recorder, [("k", i) for i in range(5)])  # batches of 1, then 4
    assert quick.submit("k", 9) == ("k", 90)  # waited at most 10 ms for company, then ran alone
    assert quick.submit("k", 10) == ("k", 100)  # after a batch of one nothing waits
    assert list(quick.batch_sizes) == [1, 4, 1, 1]


# ---------------------------------------------------------------- a batch over the cores

def test_split_forward_runs_chunks_in_order_on_single_threaded_workers():
    default = torch.get_num_threads()
    split = SplitForward(2)
    try:
        assert torch.get_num_threads() == default  # the caller's setting is untouched
        seen = []

        def double(chunk):
            seen.append((threading.current_thread().name, torch.get_num_threads(), list(chunk)))
            return [item * 2 for item in chunk]

        assert split.map(double, [1, 2, 3, 4, 5]) == [2, 4, 6, 8, 10]
        assert sorted(chunk for _, _, chunk in seen) == [[1, 2], [3, 4, 5]]
        assert all(name.startswith("forward-core") and threads == 1 for name, threads, _ in seen)
        assert split.map(double, [7]) == [14]
        # A thread started now still adopts the process-wide default.
        adopted = []
        thread = threading.Thread(target=lambda: adopted.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert adopted == [default]
    finally:
        split.close()


# ---------------------------------------------------------------- the service's classification

@pytest.fixture(scope="module")
def service():
    return InferenceService(Settings(torch_threads=2))


def test_a_batched_forward_gives_each_image_its_own_probabilities(service):
    model = service.models.get("efficientnet_lite0", True)
    transform = __import__("models").create_transform(model.spec)
    inputs = [transform(images.load_image(EXAMPLES_DIR / name)) for name in ("cat.jpg", "espresso.jpg", "rocket.jpg")]
    batched = service._classify_batch(None, [(model, x) for x in inputs])
    for x, (probabilities, _, batch_size) in zip(inputs, batched):
        (alone, _, one), = service._classify_batch(None, [(model, x)])
        assert batch_size == 3 and one == 1
        assert torch.allclose(probabilities, alone, atol=1e-5)


def test_concurrent_classifications_are_batched_and_each_gets_its_image_label(service, monkeypatch):
    names = ["espresso.jpg", "cat.jpg", "espresso.jpg", "rocket.jpg", "cat.jpg", "espresso.jpg"]
    pictures = [images.load_image(EXAMPLES_DIR / name) for name in names]
    alone = [service.classify(p, "efficientnet_lite0", 1) for p in pictures]
    assert all(r.batch_size == 1 for r in alone)

    # Hold the first forward until the others have queued behind it.
    release, run = threading.Event(), service.classifier._run_batch
    calls = []

    def held(key, items):
        calls.append(len(items))
        if len(calls) == 1:
            release.wait(BOUND_S)
        return run(key, items)

    monkeypatch.setattr(service.classifier, "_run_batch", held)
    with ThreadPoolExecutor(len(pictures)) as pool:
        first = pool.submit(service.classify, pictures[0], "efficientnet_lite0", 1)
        wait_until(lambda: len(calls) == 1, "the first forward")
        rest = [pool.submit(service.classify, p, "efficientnet_lite0", 1) for p in pictures[1:]]
        wait_until(lambda: service.classifier.waiting == len(pictures) - 1, "the other requests to queue")
        release.set()
        together = [first.result(BOUND_S)] + [f.result(BOUND_S) for f in rest]
    assert calls == [1, len(pictures) - 1]
    assert [r.batch_size for r in together] == [1] + [len(pictures) - 1] * (len(pictures) - 1)
    assert [list(r.probabilities) for r in together] == [list(r.probabilities) for r in alone]
    for single, batched in zip(alone, together):
        (label, p1), = single.probabilities.items()
        assert batched.probabilities[label] == pytest.approx(p1, abs=1e-5)


def test_the_page_says_when_a_forward_served_several_requests(service, monkeypatch):
    callbacks = Callbacks(service)
    result = service.classify(images.load_image(EXAMPLES_DIR / "cat.jpg"), "efficientnet_lite0", 3)
    monkeypatch.setattr(service, "classify", lambda *a, **k: type(result)(
        result.probabilities, 120.0, result.model_name, result.pretrained, batch_size=4))
    _, details, _, _ = callbacks.classify_ui(str(EXAMPLES_DIR / "cat.jpg"), "efficientnet_lite0", 3)
    assert "the model took **120 ms** for a batch of 4 images sent at once" in details


def test_classify_events_may_run_together_and_the_views_one_at_a_time(service):
    functions = {fn.api_name: fn for fn in build_demo(service).fns.values()}
    limit = service.classifier.max_batch * service.settings.concurrency
    for name in ("classify", "classify_ui"):  # the API and the page
        assert (functions[name].concurrency_id, functions[name].concurrency_limit) == ("classify", limit)
    assert (functions["swin_views"].concurrency_id, functions["swin_views"].concurrency_limit) == \
        ("model", service.settings.concurrency)
