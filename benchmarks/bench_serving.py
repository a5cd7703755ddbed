"""The serving design before and after issue 14, measured in one run: the
app at ``BEFORE`` (a traced forward, ``torch.jit.trace``, for the
EfficientNets; the Swin views' forwards outside the batcher, one at a time) against the app in this folder, alternately.

    python -c "from benchmarks.bench_serving import main; main()"

``BEFORE``'s files are taken with ``git archive`` into a temporary folder and
its ``app.py`` run from there (the packages next to it are the ones it
imports). For EfficientNet-Lite0 and Swin-T: one client's request latency
(requests one after the other, median) and the throughput of 8 clients at
once over one client in a row, as bench_app.py measures them; the ceiling is
bench_app.py's (one client's request time over a forward's share of the
cores, side by side, measured here). The issue's goals: one-client latency
within 10 % of before, 8-client throughput within 15 %, and at least 90 % of
the ceiling.
"""
from __future__ import annotations

import concurrent.futures
import subprocess
import tarfile
import tempfile
from pathlib import Path

from benchmarks.bench_app import (LITE0, SWIN_T, AppProcess, bare_models, client_for, classify, core_capacity,
                                  publish_swin_t, throughput)
from benchmarks.common import ROOT, load_average, machine, markdown_table, median

BEFORE = "85b8ab3"
ARCHITECTURES = {LITE0: "EfficientNet-Lite0", SWIN_T: "Swin-T"}
ROUNDS = 2
REQUESTS = 48
CLIENTS = 8


def export(commit: str, folder: Path) -> Path:
    """The files of ``commit`` in ``folder`` (``git archive``; nothing of the checkout changes)."""
    archive = folder / "before.tar"
    subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), commit], cwd=ROOT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "before", filter="data")
    return folder / "before"


def run(rounds: int = ROUNDS, requests: int = REQUESTS) -> dict:
    import torch

    from demo.service import available_cpus

    torch.set_num_threads(available_cpus())
    figures = {side: {a: [] for a in ARCHITECTURES} for side in ("before", "after")}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        hub_cache = work / "hub-cache"
        reference = publish_swin_t(hub_cache, work)
        bare = bare_models(reference)
        apps = {"before": AppProcess(work / "home-before", hub_cache, {}, export(BEFORE, work)),
                "after": AppProcess(work / "home-after", hub_cache, {})}
        for side, app in apps.items():
            (work / f"home-{side}").mkdir()
            app.start()
        try:
            for app in apps.values():
                app.wait_for_page()
                for architecture in ARCHITECTURES:
                    classify(client_for(app.url), architecture)  # loaded
            for _ in range(rounds):
                for side, app in apps.items():
                    for architecture in ARCHITECTURES:
                        figures[side][architecture].append(
                            throughput(app.url, architecture, CLIENTS, requests, 1, app.cpu_s))
            worker = concurrent.futures.ThreadPoolExecutor(1)
            capacity = {a: core_capacity(*bare[a], budget_s=10.0, worker=worker) for a in ARCHITECTURES}
            worker.shutdown()
        finally:
            for app in apps.values():
                app.stop()
    rows = {}
    for architecture in ARCHITECTURES:
        row = {}
        for side in ("before", "after"):
            runs = figures[side][architecture]
            serial_ms = median([r["serial_median_ms"] for r in runs])
            ratio = median([r["ratio"] for r in runs])
            row[side] = dict(serial_ms=serial_ms, serial_rps=median([r["serial_rps"] for r in runs]),
                             concurrent_rps=median([r["concurrent_rps"] for r in runs]), ratio=ratio,
                             ceiling=serial_ms / capacity[architecture]["lanes_ms_per_image"])
        rows[architecture] = row
    return dict(rows=rows, capacity=capacity, rounds=rounds, requests=requests, machine=machine(),
                load_average=load_average())


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def section(r: dict) -> str:
    table = []
    for architecture, row in r["rows"].items():
        before, after = row["before"], row["after"]
        latency = after["serial_ms"] / before["serial_ms"]
        throughput_ratio = after["concurrent_rps"] / before["concurrent_rps"]
        of_ceiling = after["ratio"] / after["ceiling"]
        table.append([ARCHITECTURES[architecture], f"{before['serial_ms']:.0f}", f"{after['serial_ms']:.0f}",
                      f"**{latency:.2f}** ({verdict(latency <= 1.10)})", f"{before['concurrent_rps']:.2f}",
                      f"{after['concurrent_rps']:.2f}", f"**{throughput_ratio:.2f}** ({verdict(throughput_ratio >= 0.85)})",
                      f"{before['ratio']:.2f}", f"{after['ratio']:.2f}", f"{after['ceiling']:.2f}",
                      f"**{of_ceiling:.2f}** ({verdict(of_ceiling >= 0.90)})"])
    return f"""## Serving before and after (issue 14)

`benchmarks/bench_serving.py`: the app at {BEFORE} (before) and the app in
this folder (after), both running, measured alternately, {r['rounds']}
rounds of {r['requests']} requests per side (one client in a row, then
{CLIENTS} clients at once); medians of the rounds. Load average at the end:
{r['load_average']} (on {r['machine']['cores']} cores ({r['machine']['cpu_capability']}) shared with other work: absolute figures move, the
ratios between the two apps measured alternately much less).

{markdown_table(["architecture", "one client ms, before", "after", "after / before (goal <= 1.10)",
                 f"{CLIENTS} clients req/s, before", "after", "after / before (goal >= 0.85)",
                 f"{CLIENTS} clients / one client, before", "after", "ceiling",
                 "after / ceiling (goal >= 0.90)"], table)}
"""


def main() -> None:
    print(section(run()))


if __name__ == "__main__":
    main()
