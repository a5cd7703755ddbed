"""The app as its users meet it: ``python app.py`` in a subprocess, called
through gradio_client with the example cat photo.

    python benchmarks/bench_app.py [--requests 25] [--json PATH] [--app-env APP_X=VALUE ...]

1. Cold start: from starting ``python app.py`` (no network: HF_HUB_OFFLINE=1)
   until its page answers, and until the first ``/classify`` with the offline
   default (efficientnet_lite0) returns, the client's connection included.
2. Resident memory of the app process: after start, after that first
   classification (Lite0 loaded), after loading Swin-T.
3. One ``/classify`` request, median and p95, against the bare model forward
   (batch 1, the same weights and threads) on the same image in this process,
   the two run interleaved; app overhead = request median - forward median.
4. Throughput with 8 clients at once / one client in a row, and the slowest
   request under load / the median request under load; beside it, in this
   process, what the cores can give: a lone forward with every thread
   against single-threaded forwards side by side, one per core, as the app
   runs requests that queue (per image).

Swin-T has no weights offline, so this script makes some: timm's Swin-T with
random weights, saved as timm publishes it, served by the tests' loopback fake
Hub (tests/fakehub.py) and downloaded into a fresh Hub cache that the app then
reads offline. Random weights cost the same forward as pretrained ones.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from benchmarks.common import (ROOT, interleaved_ms, load_average, machine, markdown_table, median,  # noqa: E402
                               percentile, write_json)

CAT = ROOT / "assets" / "examples" / "cat.jpg"
LITE0 = "efficientnet_lite0"
SWIN_T = "swin_tiny_patch4_window7_224"
REQUEST_TIMEOUT_S = 120
START_TIMEOUT_S = 180


# ---------------------------------------------------------------------------- the app process

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """``python app.py`` on a free loopback port, offline, with its own Gradio
    temp folder and the given Hub cache."""

    def __init__(self, home: Path, hub_cache: Path, extra_env: dict[str, str], app_dir: Path = ROOT):
        self.app_dir = app_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = home / "app.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GRADIO_", "APP_", "PYTHONPATH"))}
        env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(self.port),
                   GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(home / "gradio"), HF_HUB_OFFLINE="1",
                   HF_HOME=str(home / "hf"), HF_HUB_CACHE=str(hub_cache), HF_HUB_DISABLE_TELEMETRY="1",
                   PYTHONUNBUFFERED="1")
        env.update(extra_env)
        self.env = env
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "app.py"], cwd=self.app_dir, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)

    def wait_for_page(self) -> float:
        """Seconds from start until ``GET /`` answers 200."""
        deadline = self.started_at + START_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"python app.py exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return time.perf_counter() - self.started_at
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"python app.py did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def rss_mb(self) -> float:
        """Resident memory of the app process (VmRSS), MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("No VmRSS in /proc/<pid>/status.")

    def cpu_s(self) -> float:
        """CPU time the app process has used (user + system, every thread), seconds."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def client_for(url: str, reuse_tls_context: bool = True):
    """A gradio_client ``Client``. gradio_client makes a new httpx client for
    each of the three HTTP calls of a request, and each loads the system's CA
    certificates into a new TLS context (about 20 ms here) even for a plain
    http:// URL; with ``reuse_tls_context`` one context, verifying just the
    same, is made once and shared, which leaves the app's own time."""
    from gradio_client import Client

    tls = ssl.create_default_context() if reuse_tls_context else True
    return Client(url, verbose=False, analytics_enabled=False, download_files=False, ssl_verify=tls)


class RawClient:
    """The HTTP calls of one gradio_client request (upload the file, join the
    queue, read the event stream until the result), made on one kept-alive
    connection and without gradio_client's 50 ms polling of its message
    queue: what the server itself costs."""

    def __init__(self, url: str, api_name: str = "/classify"):
        import httpx

        reference = client_for(url)
        self.fn_index = reference._infer_fn_index(api_name, None)
        self.upload_url, self.join_url = reference.upload_url, reference.sse_data_url
        self.stream_url = reference.sse_url
        self.http = httpx.Client(timeout=REQUEST_TIMEOUT_S)
        self.session_hash = uuid.uuid4().hex

    def classify(self, architecture: str, path: Path = CAT, top_k: int = 5) -> dict:
        with open(path, "rb") as f:
            response = self.http.post(self.upload_url, files=[("files", (path.name, f))])
        response.raise_for_status()
        file_data = {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        response = self.http.post(self.join_url, json={
            "data": [file_data, architecture, top_k], "fn_index": self.fn_index, "session_hash": self.session_hash,
            "event_data": None, "trigger_id": None})
        response.raise_for_status()
        event_id = response.json()["event_id"]
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        with self.http.stream("GET", self.stream_url, params={"session_hash": self.session_hash}) as stream:
            buffer = b""
            for chunk in stream.iter_bytes():
                buffer += chunk
                while b"\n\n" in buffer:
                    line, buffer = buffer.split(b"\n\n", 1)
                    if not line.startswith(b"data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                        if not message.get("success"):
                            raise RuntimeError(f"The app failed: {message.get('output')}")
                        return message["output"]["data"][0]
                if time.monotonic() > deadline:
                    break
        raise RuntimeError("The app's event stream ended without the result.")


POLL_S = 0.002  # how often the benchmark's gradio_client checks for a result
POLLING_LOOP = "stream_sse_v1plus"  # gradio_client.utils: waits for a request's messages
polled = [0]  # sleeps shortened by polling_every, to check that it works


@contextlib.contextmanager
def polling_every(seconds: float):
    """gradio_client waits for a result by checking its message queue, with a
    50 ms sleep between checks: a result that has come waits for the next
    check, 0 to 50 ms (a browser gets it when it comes). Inside this context
    those sleeps last at most ``seconds``, so that a request's time is the
    app's and not the client's tick; other sleeps (its check for
    cancellation) are left alone. Process-wide: for one thread's use at a
    time (the clients may be threads of it)."""
    import gradio_client.utils as client_utils

    real = client_utils.time

    def sleep(duration: float) -> None:
        if sys._getframe(1).f_code.co_name == POLLING_LOOP:
            polled[0] += 1
            duration = min(duration, seconds)
        real.sleep(duration)

    shim = types.SimpleNamespace(**{name: getattr(real, name) for name in dir(real) if not name.startswith("__")})
    shim.sleep = sleep
    client_utils.time = shim
    try:
        yield
    finally:
        client_utils.time = real


def check_polling_shortened() -> None:
    """Fail loudly where gradio_client no longer waits as polling_every expects
    (its figures would silently include the 50 ms ticks again)."""
    if polled[0] == 0:
        raise RuntimeError(f"polling_every shortened no sleep: gradio_client.utils.{POLLING_LOOP} no longer "
                           "sleeps through gradio_client.utils.time; update benchmarks/bench_app.py.")


def classify(client, architecture: str, path: Path = CAT, top_k: int = 5) -> dict:
    from gradio_client import handle_file

    job = client.submit(handle_file(str(path)), architecture, top_k, api_name="/classify")
    return job.result(timeout=REQUEST_TIMEOUT_S)


def timed_classify(client, architecture: str) -> float:
    start = time.perf_counter()
    classify(client, architecture)
    return (time.perf_counter() - start) * 1000


# ---------------------------------------------------------------------------- Swin-T weights, made here

def publish_swin_t(hub_cache: Path, work: Path):
    """Random Swin-T weights as timm writes them, put into the Hub cache
    ``hub_cache`` (made if missing); returns timm's model (its state dict is
    the checkpoint)."""
    import timm
    from timm.models import save_for_hf

    import models

    hub_cache.mkdir(parents=True, exist_ok=True)

    torch_seed()
    reference = timm.create_model(SWIN_T, pretrained=False).eval()
    folder = work / "swin_t_checkpoint"
    save_for_hf(reference, folder, safe_serialization=True)
    fill_hub_cache(hub_cache, models.get_spec(SWIN_T).hf_hub_id, folder)
    return reference


def fill_hub_cache(hub_cache: Path, repo_id: str, folder: Path, commit: str = "0" * 40) -> None:
    """Put ``folder``'s files into a Hub cache as ``hf_hub_download`` leaves
    them (``models--org--name/snapshots/<commit>/``, ``refs/main`` naming the
    commit: the cache layout huggingface_hub documents), so that the app finds
    them with ``HF_HUB_OFFLINE=1``."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        shutil.copyfile(path, snapshot / path.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)


def torch_seed() -> None:
    import torch

    torch.manual_seed(0)


def bare_models(swin_reference) -> dict[str, tuple]:
    """(model, input) per architecture, in this process: the app's weights,
    preparation for inference and preprocessing."""
    import models
    from demo import images
    from demo.service import load_for_inference

    image = images.load_image(CAT)
    lite0 = load_for_inference(LITE0, pretrained=True)
    swin = models.create_model(SWIN_T)
    models.load_timm_state_dict(swin, swin_reference.state_dict())
    swin = models.prepare_for_inference(swin)
    return {name: (model, models.create_transform(model.spec)(image).unsqueeze(0))
            for name, model in ((LITE0, lite0), (SWIN_T, swin))}


# ---------------------------------------------------------------------------- measurements

def request_latency(url: str, architecture: str, model, x, requests: int, budget_s: float,
                    worker: concurrent.futures.Executor) -> dict:
    """Requests through the app (gradio_client sharing one TLS context and
    checking for the result every ``POLL_S``; gradio_client as it comes; the raw
    HTTP calls) and bare forwards here on ``worker`` (a thread, as the app
    runs its forwards), interleaved."""
    import torch

    def run_forward():
        with torch.inference_mode():
            model(x)

    def forward():
        worker.submit(run_forward).result(timeout=REQUEST_TIMEOUT_S)

    client, default_client, raw = client_for(url), client_for(url, reuse_tls_context=False), RawClient(url)
    def request():
        with polling_every(POLL_S):
            classify(client, architecture)

    samples = interleaved_ms({"request": request,
                              "default_client": lambda: classify(default_client, architecture),
                              "raw": lambda: raw.classify(architecture), "forward": forward},
                             min_rounds=min(8, requests), max_rounds=requests, budget_s=budget_s, warmup=2)
    check_polling_shortened()
    request, bare = samples["request"], median(samples["forward"])
    return dict(architecture=architecture, n=len(request), request_median_ms=median(request),
                request_p95_ms=percentile(request, 95), forward_median_ms=bare,
                ratio=median(request) / bare, overhead_ms=median(request) - bare,
                default_client_median_ms=median(samples["default_client"]),
                raw_median_ms=median(samples["raw"]), raw_p95_ms=percentile(samples["raw"], 95),
                raw_overhead_ms=median(samples["raw"]) - bare)


def views_latency(url: str, clicks: int = 8) -> dict:
    """``/swin_views`` of Swin-T on the cat photo: the first call (the forward
    with attention captured, and every view drawn), then clicks that move
    the query point (the forward and the views that do not depend on the
    point come from the app's caches)."""
    from gradio_client import handle_file

    client = client_for(url)

    def views(x: int, y: int) -> float:
        start = time.perf_counter()
        client.predict(handle_file(str(CAT)), SWIN_T, 0, 1, "mean", x, y, api_name="/swin_views")
        return (time.perf_counter() - start) * 1000

    first = views(112, 112)
    points = [(16 + 27 * i % 200, 20 + 53 * i % 190) for i in range(clicks)]
    moved = [views(x, y) for x, y in points]
    return dict(first_ms=first, click_median_ms=median(moved), click_p95_ms=percentile(moved, 95), clicks=clicks)


def core_capacity(model, x, budget_s: float, worker: concurrent.futures.Executor) -> dict:
    """Per image: one forward with every thread (a lone request in the app;
    on ``worker``, as the bare forwards above) against one single-threaded
    forward per core side by side (requests that queue), interleaved; the
    second bounds what many clients can get."""
    import torch

    from demo.cores import CoreWorkers
    from demo.service import available_cpus

    def forward():
        with torch.inference_mode():
            model(x)

    cores = available_cpus()
    workers = CoreWorkers(cores)

    def side_by_side():
        with concurrent.futures.ThreadPoolExecutor(cores) as pool:
            for future in [pool.submit(workers.run, forward) for _ in range(cores)]:
                future.result()

    try:
        samples = interleaved_ms({"wide": lambda: worker.submit(forward).result(), "lanes": side_by_side},
                                 min_rounds=5, max_rounds=30, budget_s=budget_s, warmup=2)
    finally:
        workers.close()
    wide_ms, lanes_ms = median(samples["wide"]), median(samples["lanes"]) / cores
    return dict(cores=cores, wide_ms=wide_ms, lanes_ms_per_image=lanes_ms, gain=wide_ms / lanes_ms)


def run_clients(url: str, architecture: str, clients: int, per_client: int,
                cpu_s: Callable[[], float]) -> tuple[float, list[float], float, float]:
    """``clients`` clients, each sending ``per_client`` requests one after the
    other, all starting together; (seconds from start to the last answer,
    latencies in ms, CPU seconds of the app (``cpu_s``, read before and
    after) and of this process, the clients, over that time).

    The clients are threads of this process, and a full garbage collection
    here (200-320 ms measured in this process, which holds timm and the
    reference models) would stop all of them at once, which separate users
    never do: as ``timeit`` does, the collector is off while they run, and
    catches up after. Like a browser, they see a result when it comes
    (:func:`polling_every`)."""
    connections = [client_for(url) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def one(client) -> list[float]:
        barrier.wait(timeout=60)
        return [timed_classify(client, architecture) for _ in range(per_client)]

    gc.collect()
    gc.disable()
    try:
        with polling_every(POLL_S), concurrent.futures.ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(one, c) for c in connections]
            barrier.wait(timeout=60)
            start, app_cpu, clients_cpu = time.perf_counter(), cpu_s(), time.process_time()
            latencies = [ms for f in futures for ms in f.result(timeout=REQUEST_TIMEOUT_S * per_client)]
            elapsed = time.perf_counter() - start
            app_cpu, clients_cpu = cpu_s() - app_cpu, time.process_time() - clients_cpu
    finally:
        gc.enable()
    return elapsed, latencies, app_cpu, clients_cpu


def throughput(url: str, architecture: str, clients: int, requests: int, rounds: int,
               app_cpu_s: Callable[[], float]) -> dict:
    """One client sending ``requests`` in a row, then ``clients`` clients
    sending ``requests`` together (``requests // clients`` each), alternately
    ``rounds`` times; with the CPU time per request under load of the app
    (``app_cpu_s``: its process's CPU seconds so far) and of the clients."""
    classify(client_for(url), architecture)  # the model is loaded
    serial_time = concurrent_time = app_cpu = clients_cpu = 0.0
    serial_latencies: list[float] = []
    concurrent_latencies: list[float] = []
    per_client = max(1, requests // clients)
    for _ in range(rounds):
        elapsed, latencies, _, _ = run_clients(url, architecture, 1, requests, app_cpu_s)
        serial_time += elapsed
        serial_latencies += latencies
        elapsed, latencies, app, own = run_clients(url, architecture, clients, per_client, app_cpu_s)
        concurrent_time += elapsed
        concurrent_latencies += latencies
        app_cpu, clients_cpu = app_cpu + app, clients_cpu + own
    serial_rps = len(serial_latencies) / serial_time
    concurrent_rps = len(concurrent_latencies) / concurrent_time
    return dict(architecture=architecture, clients=clients, serial_requests=len(serial_latencies),
                app_cpu_ms_per_request=1000 * app_cpu / len(concurrent_latencies),
                clients_cpu_ms_per_request=1000 * clients_cpu / len(concurrent_latencies),
                concurrent_requests=len(concurrent_latencies), serial_rps=serial_rps, concurrent_rps=concurrent_rps,
                ratio=concurrent_rps / serial_rps, serial_median_ms=median(serial_latencies),
                concurrent_median_ms=median(concurrent_latencies),
                concurrent_p95_ms=percentile(concurrent_latencies, 95),
                concurrent_max_ms=max(concurrent_latencies),
                tail_ratio=max(concurrent_latencies) / median(concurrent_latencies))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=25, help="timed requests per architecture (at most)")
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of timed requests per architecture")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--throughput-requests", type=int, default=48,
                        help="requests per side and round (6 per client: with fewer, the start and the end of a "
                             "run, when some cores wait for the last requests, weigh on the ratio)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of one client / many clients")
    parser.add_argument("--throughput-models", nargs="+", default=[LITE0, SWIN_T])
    parser.add_argument("--app-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="extra environment for the app (APP_* settings)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from demo.service import available_cpus

    torch.set_num_threads(available_cpus())  # what the app uses with APP_CONCURRENCY=1
    extra_env = dict(item.split("=", 1) for item in args.app_env)
    results: dict = dict(machine=machine(), app_env=extra_env)
    results["machine"]["load_average_start"] = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        work = Path(tmp)
        hub_cache = work / "hub-cache"
        swin_reference = publish_swin_t(hub_cache, work)
        bare = bare_models(swin_reference)
        del swin_reference

        app = AppProcess(work, hub_cache, extra_env)
        app.start()
        try:
            page_s = app.wait_for_page()
            rss_start = app.rss_mb()
            client = client_for(app.url)
            first = classify(client, LITE0)
            first_s = time.perf_counter() - app.started_at
            rss_lite0 = app.rss_mb()
            start = time.perf_counter()
            classify(client, SWIN_T)
            first_swin_s = time.perf_counter() - start
            rss_swin = app.rss_mb()
            results["cold_start"] = dict(page_s=page_s, first_classification_s=first_s, first_label=first["label"],
                                         first_swin_t_request_s=first_swin_s)
            results["memory"] = dict(after_start_mb=rss_start, after_lite0_mb=rss_lite0, after_swin_t_mb=rss_swin)
            print(f"cold start: page {page_s:.1f} s, first classification {first_s:.1f} s ({first['label']}); "
                  f"memory {rss_start:.0f} / {rss_lite0:.0f} / {rss_swin:.0f} MiB", flush=True)

            results["latency"] = []
            worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bare-forward")
            for architecture in (LITE0, SWIN_T):
                model, x = bare[architecture]
                row = request_latency(app.url, architecture, model, x, args.requests, args.budget, worker)
                results["latency"].append(row)
                print(f"{architecture}: request median {row['request_median_ms']:.1f} ms, "
                      f"p95 {row['request_p95_ms']:.1f} ms (default client {row['default_client_median_ms']:.1f}, "
                      f"raw HTTP {row['raw_median_ms']:.1f}), forward {row['forward_median_ms']:.1f} ms", flush=True)

            results["views"] = views_latency(app.url)
            print(f"swin_views: first {results['views']['first_ms']:.0f} ms, a click that moves the query point "
                  f"{results['views']['click_median_ms']:.0f} ms (median)", flush=True)

            results["throughput"] = []
            for architecture in args.throughput_models:
                row = throughput(app.url, architecture, args.clients, args.throughput_requests, args.rounds,
                                 app.cpu_s)
                if architecture in bare:
                    model, x = bare[architecture]
                    row["capacity"] = core_capacity(model, x, budget_s=10.0, worker=worker)
                    # The most N clients can gain: a request in a row against a forward's share of the cores.
                    row["ceiling"] = row["serial_median_ms"] / row["capacity"]["lanes_ms_per_image"]
                    # What the app's own CPU time per request under load allows on these
                    # cores, with clients that cost nothing, against one client in a row.
                    row["app_cpu_max_rps"] = row["capacity"]["cores"] * 1000 / row["app_cpu_ms_per_request"]
                    row["app_cpu_bound"] = row["app_cpu_max_rps"] / row["serial_rps"]
                results["throughput"].append(row)
                print(f"{architecture}: {row['serial_rps']:.2f} -> {row['concurrent_rps']:.2f} requests/s "
                      f"(x{row['ratio']:.2f}), slowest / median under load {row['tail_ratio']:.2f}", flush=True)
            results["app_log_tail"] = app.log()[-1500:]
            results["machine"]["load_average_end"] = load_average()
            worker.shutdown()
        finally:
            app.stop()
    print()
    print(report(results))
    write_json(args.json, results)
    return results


def report(results: dict) -> str:
    """The results as Markdown tables (no goals; run_all.py adds them)."""
    cold, memory = results["cold_start"], results["memory"]
    parts = [markdown_table(
        ["cold start", "seconds"],
        [["`python app.py` until the page answers", f"{cold['page_s']:.1f}"],
         ["... until the first classification returns (efficientnet_lite0)", f"{cold['first_classification_s']:.1f}"],
         ["first Swin-T request (loads the model)", f"{cold['first_swin_t_request_s']:.1f}"]]),
        markdown_table(["resident memory", "MiB"],
                       [["after start", f"{memory['after_start_mb']:.0f}"],
                        ["after the first classification (Lite0 loaded)", f"{memory['after_lite0_mb']:.0f}"],
                        ["after loading Swin-T", f"{memory['after_swin_t_mb']:.0f}"]]),
        markdown_table(["architecture", "requests", "request median ms", "request p95 ms", "bare forward ms",
                        "request / forward", "overhead ms", "default gradio_client ms", "raw HTTP ms",
                        "raw overhead ms"],
                       [[r["architecture"], r["n"], f"{r['request_median_ms']:.1f}", f"{r['request_p95_ms']:.1f}",
                         f"{r['forward_median_ms']:.1f}", f"{r['ratio']:.2f}", f"{r['overhead_ms']:.1f}",
                         f"{r['default_client_median_ms']:.1f}", f"{r['raw_median_ms']:.1f}",
                         f"{r['raw_overhead_ms']:.1f}"]
                        for r in results["latency"]]),
        markdown_table(["architecture", "one client req/s", f"{results['throughput'][0]['clients']} clients req/s",
                        "ratio", "median ms under load", "slowest ms under load", "slowest / median"],
                       [[r["architecture"], f"{r['serial_rps']:.2f}", f"{r['concurrent_rps']:.2f}",
                         f"{r['ratio']:.2f}", f"{r['concurrent_median_ms']:.0f}", f"{r['concurrent_max_ms']:.0f}",
                         f"{r['tail_ratio']:.2f}"] for r in results["throughput"]])]
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
