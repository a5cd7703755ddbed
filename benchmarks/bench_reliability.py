"""24 clients at once against ``python app.py``: nothing lost, resident memory
within the bound the README states, and the Swin views served beside
classification (their wait against a classification's).

    python -c "from benchmarks.bench_reliability import main; main()"

The app runs offline with a random-weight Swin-T in its Hub cache (as in
bench_app.py). 16 clients classify (alternately EfficientNet-Lite0 and
Swin-T), 8 ask for the Swin views of Swin-T, each clicking another point
every time, all starting together; every client sends its requests one
after the other for ``DURATION_S``. The app's resident memory (VmRSS) is
sampled every 50 ms. A request is *lost* when it fails or gets no answer
within ``REQUEST_TIMEOUT_S``. Before the clients start, one request of each
kind, and the views of every stage (whose frames the app draws once), warm
the app up.
"""
from __future__ import annotations

import concurrent.futures
import gc
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_app import (CAT, LITE0, SWIN_T, AppProcess, client_for, polling_every, publish_swin_t)
from benchmarks.common import load_average, machine, markdown_table, median, percentile
from demo.service import Settings, resident_memory_bound_mb

CLIENTS = 24
VIEW_CLIENTS = 8
DURATION_S = 60.0
REQUEST_TIMEOUT_S = 120.0
def run(duration_s: float = DURATION_S, clients: int = CLIENTS, view_clients: int = VIEW_CLIENTS) -> dict:
    from gradio_client import handle_file

    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        work = Path(tmp)
        hub_cache = work / "hub-cache"
        publish_swin_t(hub_cache, work)
        app = AppProcess(work, hub_cache, {})
        app.start()
        try:
            app.wait_for_page()
            warm = client_for(app.url)
            for architecture in (LITE0, SWIN_T):
                warm.predict(handle_file(str(CAT)), architecture, 5, api_name="/classify")
            for stage in range(4):  # the views' frames are drawn once per stage for the process's lifetime
                warm.predict(handle_file(str(CAT)), SWIN_T, stage, 1, "mean", 112, 112, api_name="/swin_views")
            rss_ready = app.rss_mb()

            samples: list[float] = []
            stop = threading.Event()

            def sample_memory() -> None:
                while not stop.is_set():
                    samples.append(app.rss_mb())
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample_memory, daemon=True)
            sampler.start()
            barrier = threading.Barrier(clients + 1)
            deadline = [0.0]

            def client(index: int) -> list[tuple[str, float | None]]:
                connection = client_for(app.url)
                barrier.wait(timeout=120)
                done, step = [], 0
                while time.perf_counter() < deadline[0]:
                    step += 1
                    start = time.perf_counter()
                    try:
                        if index < view_clients:
                            kind = "swin_views"
                            x, y = (16 + 37 * (step + index)) % 224, (20 + 53 * (step + 2 * index)) % 224
                            job = connection.submit(handle_file(str(CAT)), SWIN_T, step % 4, 1, "mean", x, y,
                                                    api_name="/swin_views")
                        else:
                            kind = "classify " + ("Lite0" if index % 2 else "Swin-T")
                            job = connection.submit(handle_file(str(CAT)), LITE0 if index % 2 else SWIN_T, 5,
                                                    api_name="/classify")
                        job.result(timeout=REQUEST_TIMEOUT_S)
                        done.append((kind, (time.perf_counter() - start) * 1000))
                    except Exception:  # noqa: BLE001 - a lost request is what this counts
                        done.append((kind, None))
                return done

            gc.collect()
            gc.disable()  # as bench_app.run_clients: the clients are threads of this process
            try:
                with polling_every(0.002), concurrent.futures.ThreadPoolExecutor(clients) as pool:
                    futures = [pool.submit(client, i) for i in range(clients)]
                    barrier.wait(timeout=120)
                    deadline[0] = time.perf_counter() + duration_s
                    results = [r for f in futures for r in f.result(timeout=duration_s + 4 * REQUEST_TIMEOUT_S)]
            finally:
                gc.enable()
                stop.set()
                sampler.join()
            rss_end = app.rss_mb()
        finally:
            app.stop()
    by_kind: dict[str, list[float]] = {}
    lost: dict[str, int] = {}
    for kind, ms in results:
        if ms is None:
            lost[kind] = lost.get(kind, 0) + 1
        else:
            by_kind.setdefault(kind, []).append(ms)
    return dict(clients=clients, view_clients=view_clients, duration_s=duration_s,
                answered=sum(len(v) for v in by_kind.values()), lost=sum(lost.values()),
                rss_ready_mb=rss_ready, rss_peak_mb=max(samples), rss_end_mb=rss_end,
                bound_mb=resident_memory_bound_mb(Settings()),
                kinds={kind: dict(n=len(v), lost=lost.get(kind, 0), median_ms=median(v),
                                  p99_ms=percentile(v, 99)) for kind, v in sorted(by_kind.items())},
                machine=machine(), load_average=load_average())


def section(r: dict) -> str:
    within = r["rss_peak_mb"] <= r["bound_mb"]
    rows = [[kind, k["n"], k["lost"], f"{k['median_ms']:.0f}", f"{k['p99_ms']:.0f}"] for kind, k in r["kinds"].items()]
    return f"""## {r['clients']} clients at once

`benchmarks/bench_reliability.py`: `python app.py` (offline, random-weight
Swin-T), {r['clients']} clients together for {r['duration_s']:.0f} s, each
sending its next request when the last is answered:
{r['clients'] - r['view_clients']} classify (half EfficientNet-Lite0, half
Swin-T), {r['view_clients']} ask for the Swin-T views at another point and
stage each time. Load average at the end: {r['load_average']}.

| requests answered | lost | resident memory when ready MiB | peak MiB | bound MiB (README) | within |
|---|---|---|---|---|---|
| {r['answered']} | **{r['lost']}** | {r['rss_ready_mb']:.0f} | {r['rss_peak_mb']:.0f} | {r['bound_mb']:.0f} | {'yes' if within else '**no**'} |

{markdown_table(["request", "answered", "lost", "median ms (wait + work)", "p99 ms"], rows)}
"""


def main() -> None:
    print(section(run()))


if __name__ == "__main__":
    main()
