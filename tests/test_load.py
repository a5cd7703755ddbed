"""Many users at once: 200 requests from 16 concurrent ``gradio_client``
clients against ``python app.py`` on loopback (conftest's ``app_server``:
offline, empty Hub cache), mixing architectures, the two endpoints and a few
bad files. Every request must come back, each with what it should get: a
result, or the one sentence its input deserves. Prints p50 / p99 / errors.

Bounded: 200 requests, each waited on for at most ``REQUEST_TIMEOUT_S``, the
whole run for at most ``RUN_TIMEOUT_S``; every thread stops by itself.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import corpus
import models
from conftest import ROOT
from demo.images import load_image, ImageInputError

EXAMPLES_DIR = ROOT / "assets" / "examples"
REQUESTS = 200
CLIENTS = 16
REQUEST_TIMEOUT_S = 120
RUN_TIMEOUT_S = 240
SWIN_T = "swin_tiny_patch4_window7_224"
IMAGENET = set(models.get_spec("efficientnet_lite0").labels)
CIFAR = set(models.get_spec("swin_cifar").labels)
CAT_CLASSES = set(models.get_spec("efficientnet_lite0").labels[281:286])
OFFLINE_SWIN = ("Could not get the weights of timm/swin_tiny_patch4_window7_224.ms_in1k from the Hugging Face Hub: "
                "offline mode is on")
BAD_FILES = ["empty.jpg", "truncated.jpg", "claims-50000x50000.png", "page.png", "pickle.jpg", "IMG_0001.HEIC"]
ODD_BUT_FINE = ["exif-rotated.jpg", "cmyk.jpg", "gray-16-bit.png", "40000x1.png"]


@dataclass
class Request:
    index: int
    endpoint: str          # "/classify" or "/swin_views"
    path: str
    architecture: str
    refusal: str | None    # the exact message expected, or None for a result
    labels: set | None = None  # /classify: the top label must be one of these


@dataclass
class Outcome:
    request: Request
    seconds: float
    kind: str              # "result", "refused" (as expected) or "unexpected"
    detail: str = ""


def plan(corpus_paths: dict[str, str]) -> list[Request]:
    """200 requests in a fixed mix: per 25, 13 EfficientNet-Lite0 (examples and odd but fine files), 4
    untrained CIFAR Swins, 2 Swin-T classifications that must say the weights are not there, 1 Swin view
    (alternately swin_cifar and Swin-T, untrained), 3 bad files, 2 odd files."""
    examples = [("cat.jpg", CAT_CLASSES), ("espresso.jpg", {"espresso"}), ("astronaut.jpg", IMAGENET),
                ("rocket.jpg", IMAGENET), ("camera.png", IMAGENET), ("clock.png", IMAGENET), ("coins.png", IMAGENET)]
    requests = []
    for i in range(REQUESTS):
        slot = i % 25
        if slot < 13:
            name, labels = examples[i % len(examples)]
            requests.append(Request(i, "/classify", str(EXAMPLES_DIR / name), "efficientnet_lite0", None, labels))
        elif slot < 17:
            requests.append(Request(i, "/classify", str(EXAMPLES_DIR / "cat.jpg"), "swin_cifar", None, CIFAR))
        elif slot < 19:
            requests.append(Request(i, "/classify", str(EXAMPLES_DIR / "espresso.jpg"), SWIN_T, OFFLINE_SWIN))
        elif slot == 19:
            architecture = "swin_cifar" if (i // 25) % 2 == 0 else SWIN_T
            requests.append(Request(i, "/swin_views", str(EXAMPLES_DIR / "cat.jpg"), architecture, None))
        elif slot < 23:
            name = BAD_FILES[i % len(BAD_FILES)]
            requests.append(Request(i, "/classify", corpus_paths[name], "efficientnet_lite0",
                                    refusal_of(corpus_paths[name])))
        else:
            name = ODD_BUT_FINE[i % len(ODD_BUT_FINE)]
            requests.append(Request(i, "/classify", corpus_paths[name], "efficientnet_lite0", None, IMAGENET))
    return requests


def refusal_of(path: str) -> str:
    """The sentence demo.images gives for ``path``: the app must answer with exactly it."""
    with pytest.raises(ImageInputError) as caught:
        load_image(path)
    return str(caught.value)


def judge(request: Request, result=None, error: BaseException | None = None) -> tuple[str, str]:
    if error is not None:
        message = str(error)
        expected = request.refusal
        if isinstance(error, AppError) and expected is not None and (
                message == expected or (expected == OFFLINE_SWIN and message.startswith(expected))):
            return "refused", message
        return "unexpected", f"{type(error).__name__}: {message[:300]}"
    if request.refusal is not None:
        return "unexpected", f"a result where the refusal {request.refusal!r} was due: {str(result)[:200]}"
    if request.endpoint == "/classify":
        if not isinstance(result, dict) or result.get("label") not in request.labels:
            return "unexpected", f"label {result.get('label') if isinstance(result, dict) else result!r}"
        if len(result.get("confidences", [])) != 5:
            return "unexpected", "not 5 confidences"
        return "result", result["label"]
    *pictures, summary = result
    if len(pictures) != 6 or "untrained weights" not in summary:
        return "unexpected", f"views {str(result)[:200]}"
    return "result", "views"


def run_client(url: str, requests: list[Request], deadline: float, stop: threading.Event) -> list[Outcome]:
    client = Client(url, verbose=False)
    outcomes = []
    for request in requests:
        if stop.is_set() or time.monotonic() > deadline:
            break  # bounded: what was not sent counts as lost
        start = time.perf_counter()
        if request.endpoint == "/classify":
            job = client.submit(handle_file(request.path), request.architecture, 5, api_name="/classify")
        else:
            job = client.submit(handle_file(request.path), request.architecture, 1, 1, "mean", 10, 20,
                                api_name="/swin_views")
        try:
            kind, detail = judge(request, result=job.result(timeout=REQUEST_TIMEOUT_S))
        except Exception as error:  # noqa: BLE001 - every failure is judged, none escapes
            kind, detail = judge(request, error=error)
        outcomes.append(Outcome(request, time.perf_counter() - start, kind, detail))
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing is best effort
        pass
    return outcomes


@pytest.fixture(scope="module")
def corpus_paths(tmp_path_factory):
    return {case.name: str(path) for case, path in corpus.build(tmp_path_factory.mktemp("load-corpus"))}


@pytest.mark.slow  # load, not coverage: tests/test_reliability.py's 24 clients run by default
@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_200_requests_from_16_clients_all_answered(app_server, corpus_paths, capsys):
    requests = plan(corpus_paths)
    assert len(requests) == REQUESTS
    shares = [requests[c::CLIENTS] for c in range(CLIENTS)]  # each client sends its share one after another
    stop = threading.Event()
    started = time.perf_counter()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(run_client, app_server.url, share, deadline, stop) for share in shares]
        try:
            outcomes = [o for f in futures for o in f.result(timeout=RUN_TIMEOUT_S + 30)]
        finally:
            stop.set()
    wall = time.perf_counter() - started

    unexpected = [o for o in outcomes if o.kind == "unexpected"]
    latencies = np.array([o.seconds for o in outcomes])
    by_endpoint = {e: np.array([o.seconds for o in outcomes if o.request.endpoint == e])
                   for e in ("/classify", "/swin_views")}
    refused = sum(o.kind == "refused" for o in outcomes)
    lost = REQUESTS - len(outcomes)
    figures = (
        f"\n[load] {REQUESTS} requests from {CLIENTS} concurrent gradio_client clients in {wall:.1f} s "
        f"({len(outcomes) / wall:.1f} requests/s): {len(outcomes) - refused - len(unexpected)} results, "
        f"{refused} expected refusals, errors (unexpected) {len(unexpected)}, lost {lost}\n"
        f"[load] latency p50 {np.percentile(latencies, 50):.2f} s, p90 {np.percentile(latencies, 90):.2f} s, "
        f"p99 {np.percentile(latencies, 99):.2f} s, max {latencies.max():.2f} s; "
        + ", ".join(f"{e} p50 {np.percentile(v, 50):.2f} s p99 {np.percentile(v, 99):.2f} s (n={len(v)})"
                    for e, v in by_endpoint.items() if len(v)))
    with capsys.disabled():
        print(figures)
        for o in unexpected[:10]:
            print(f"[load] unexpected: #{o.request.index} {o.request.endpoint} {o.request.architecture} "
                  f"{o.request.path.rsplit('/', 1)[-1]}: {o.detail}")
    assert lost == 0, figures
    assert not unexpected, figures
    assert refused == sum(r.refusal is not None for r in requests)
    # Afterwards the app answers as before, and no user's file left a stack trace in the log.
    after = Client(app_server.url, verbose=False).predict(handle_file(str(EXAMPLES_DIR / "cat.jpg")),
                                                          "efficientnet_lite0", 3, api_name="/classify")
    assert after["label"] in CAT_CLASSES
    assert "Traceback" not in app_server.output()
