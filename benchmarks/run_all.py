"""Run every benchmark and write benchmarks/RESULTS.md: a table per benchmark,
each figure next to its goal (met / not met).

    python -m benchmarks.run_all [--quick] [--output benchmarks/RESULTS.md]

Adding a benchmark: put ``benchmarks/bench_<topic>.py`` with a ``main()``
that takes no arguments and prints a Markdown section (from a ``## `` heading
on: its tables, the figures as ratios to something measured in the same run,
and what they mean). ``run_all`` runs every such module (``python -c "from
benchmarks.bench_<topic> import main; main()"`` from the repository root,
one process each, ``SECTION_TIMEOUT_S`` at most) and appends what it printed
from its first ``## `` line to RESULTS.md, in file-name order.
``bench_models.py`` and ``bench_app.py`` are run with their own arguments and
written by the sections below.

Each benchmark runs in its own process (its own memory, torch settings and
time limit) and hands its figures over as JSON; a benchmark that fails or runs
out of time is reported as such, and the others still are. ``make bench``
runs this after installing the test dependencies (timm is the reference).
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, markdown_table, verdict

HERE = Path(__file__).resolve().parent

# The goals.
SWIN_T = "swin_tiny_patch4_window7_224"
LITE0 = "efficientnet_lite0"
FORWARD_GOALS = {(SWIN_T, 1): 0.90, ("tf_efficientnetv2_s", 1): 1.00, ("tf_efficientnetv2_s", 8): 1.00}
CAPTURE_GOAL = 1.25              # capture_attention / plain forward
REQUEST_OVERHEAD_GOAL_MS = 60    # request median - bare forward median
COLD_START_GOAL_S = 15           # python app.py until the first classification returns
THROUGHPUT_GOAL = 1.5            # 8 clients at once / one client in a row
TAIL_GOAL = 3.0                  # slowest request under load / median under load

SHORT = {SWIN_T: "Swin-T", "swin_base_patch4_window12_384": "Swin-B 384", "tf_efficientnetv2_s": "EfficientNetV2-S",
         LITE0: "EfficientNet-Lite0"}


def run(script: str, args: list[str], json_path: Path, timeout_s: float) -> tuple[dict | None, str]:
    """Run a benchmark script; (its JSON, or None; what went wrong, or "")."""
    command = [sys.executable, "-m", f"benchmarks.{Path(script).stem}", *args, "--json", str(json_path)]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    problem = ""
    try:
        completed = subprocess.run(command, cwd=ROOT, timeout=timeout_s)
        if completed.returncode:
            problem = f"{script} exited with {completed.returncode}"
    except subprocess.TimeoutExpired:
        problem = f"{script} ran out of its {timeout_s:.0f} s"
    print(f"({script}: {time.perf_counter() - start:.0f} s)", flush=True)
    data = json.loads(json_path.read_text()) if json_path.exists() else None
    return data, problem


def forward_section(models_data: dict | None, problem: str) -> str:
    if not models_data:
        return f"Not measured: {problem or 'no results'}."
    rows = []
    for r in models_data["rows"]:
        goal = FORWARD_GOALS.get((r["model"], r["batch"]))
        rows.append([SHORT.get(r["model"], r["model"]), r["batch"], r["rounds"], f"{r['ours']:.1f}",
                     f"{r['timm']:.1f}", f"**{r['ratio']:.2f}**", f"<= {goal:.2f}" if goal else "-",
                     verdict(r["ratio"] <= goal if goal else None), f"{r['fastest_ratio']:.2f}",
                     "yes" if r["top1_agrees"] else "**no**"])
    table = markdown_table(["model", "batch", "rounds", "ours ms (median)", "timm ms (median)", "ours / timm", "goal",
                            "", "fastest ours / fastest timm", "same top-1"], rows)
    return table + (f"\n\nIncomplete: {problem}." if problem else "")


def capture_section(models_data: dict | None, problem: str) -> str:
    rows = [r for r in (models_data or {}).get("rows", []) if r.get("capture")]
    if not rows:
        return f"Not measured: {problem or 'no Swin rows'}."
    return markdown_table(
        ["model", "batch", "plain forward ms", "with capture_attention ms", "capture / plain", "goal", ""],
        [[SHORT.get(r["model"], r["model"]), r["batch"], f"{r['ours']:.1f}", f"{r['capture']:.1f}",
          f"**{r['capture_ratio']:.2f}**", f"<= {CAPTURE_GOAL:.2f}", verdict(r["capture_ratio"] <= CAPTURE_GOAL)]
         for r in rows])


def app_sections(app: dict | None, problem: str) -> dict[str, str]:
    if not app or "throughput" not in app:
        missing = f"Not measured: {problem or 'no results'}."
        return dict(request=missing, cold=missing, memory=missing, throughput=missing)
    latency = markdown_table(
        ["architecture", "requests", "request median ms", "request p95 ms", "bare forward ms", "request / forward",
         "request - forward ms", "goal", "", "raw HTTP median ms", "gradio_client as it comes, median ms"],
        [[SHORT.get(r["architecture"], r["architecture"]), r["n"], f"{r['request_median_ms']:.0f}",
          f"{r['request_p95_ms']:.0f}", f"{r['forward_median_ms']:.0f}", f"{r['ratio']:.2f}",
          f"**{r['overhead_ms']:.0f}**", f"<= {REQUEST_OVERHEAD_GOAL_MS}",
          verdict(r["overhead_ms"] <= REQUEST_OVERHEAD_GOAL_MS), f"{r['raw_median_ms']:.0f}",
          f"{r['default_client_median_ms']:.0f}"] for r in app["latency"]])
    cold = app["cold_start"]
    cold_table = markdown_table(
        ["from `python app.py` (offline) until", "seconds", "goal", ""],
        [["the page answers", f"{cold['page_s']:.1f}", "-", "-"],
         ["the first classification returns (efficientnet_lite0, cat photo)",
          f"**{cold['first_classification_s']:.1f}**", f"<= {COLD_START_GOAL_S}",
          verdict(cold["first_classification_s"] <= COLD_START_GOAL_S)],
         ["(then) the first Swin-T request returns, loading the model", f"{cold['first_swin_t_request_s']:.1f}", "-",
          "-"]])
    memory = app["memory"]
    memory_table = markdown_table(
        ["resident memory of the app process (VmRSS)", "MiB"],
        [["after start (page answers, no model loaded)", f"{memory['after_start_mb']:.0f}"],
         ["after the first classification (EfficientNet-Lite0 loaded)", f"{memory['after_lite0_mb']:.0f}"],
         ["after loading Swin-T", f"{memory['after_swin_t_mb']:.0f}"]])
    throughput = markdown_table(
        ["architecture", "one client in a row, req/s", "8 clients at once, req/s", "ratio", "goal", "",
         "median ms under load", "slowest ms under load", "slowest / median", "goal", ""],
        [[SHORT.get(r["architecture"], r["architecture"]), f"{r['serial_rps']:.2f}", f"{r['concurrent_rps']:.2f}",
          f"**{r['ratio']:.2f}**", f">= {THROUGHPUT_GOAL}", verdict(r["ratio"] >= THROUGHPUT_GOAL),
          f"{r['concurrent_median_ms']:.0f}", f"{r['concurrent_max_ms']:.0f}", f"**{r['tail_ratio']:.2f}**",
          f"<= {TAIL_GOAL:.0f}", verdict(r["tail_ratio"] <= TAIL_GOAL)] for r in app["throughput"]])
    capacity_rows = [r for r in app["throughput"] if "capacity" in r]
    if capacity_rows:
        throughput += "\n\n" + markdown_table(
            ["architecture", "one client: request median ms", "a lone forward, every thread, ms",
             "forwards side by side, one per core: ms per image", "side by side / lone",
             "ceiling: request median / ms per image", "app CPU ms per request under load",
             "clients' CPU ms per request", "bound: cores / app CPU per request, over one client's req/s"],
            [[SHORT.get(r["architecture"], r["architecture"]), f"{r['serial_median_ms']:.0f}",
              f"{r['capacity']['wide_ms']:.0f}", f"{r['capacity']['lanes_ms_per_image']:.0f}",
              f"{r['capacity']['gain']:.2f}", f"{r['ceiling']:.2f}", f"{r['app_cpu_ms_per_request']:.0f}",
              f"{r['clients_cpu_ms_per_request']:.0f}", f"{r['app_cpu_bound']:.2f}"] for r in capacity_rows])
        for r in capacity_rows:
            if r["ceiling"] < THROUGHPUT_GOAL:
                throughput += (f"\n\n{SHORT.get(r['architecture'], r['architecture'])}: the ceiling "
                               f"({r['ceiling']:.2f}) is under the goal's {THROUGHPUT_GOAL}: even with no cost "
                               "but the forwards, these cores cannot give 8 clients 1.5 x what one client in a "
                               "row gets, since a lone forward with every thread costs only "
                               f"{r['capacity']['gain']:.2f} x a forward's share of the cores under load.")
            if r["app_cpu_bound"] < THROUGHPUT_GOAL:
                throughput += (f"\n\n{SHORT.get(r['architecture'], r['architecture'])}: at the app's own CPU time "
                               f"per request under load ({r['app_cpu_ms_per_request']:.0f} ms), "
                               f"{r['capacity']['cores']} cores serve at most "
                               f"{r['app_cpu_max_rps']:.1f} requests/s, "
                               f"{r['app_cpu_bound']:.2f} x one client in a row, even with clients that cost nothing.")
    views = app.get("views")
    if views:
        latency += "\n\n" + markdown_table(
            ["`/swin_views`, Swin-T, cat photo", "ms"],
            [["the first call: forward with attention captured, every view drawn", f"{views['first_ms']:.0f}"],
             [f"a click that moves the query point (median of {views['clicks']})", f"{views['click_median_ms']:.0f}"],
             ["... p95", f"{views['click_p95_ms']:.0f}"]])
    return dict(request=latency, cold=cold_table, memory=memory_table, throughput=throughput)


def machine_line(*sources: dict | None) -> str:
    about = next((s["machine"] for s in sources if s and "machine" in s), None)
    if not about:
        return ""
    flags = "AVX-512 bf16" if about.get("avx512_bf16") else about.get("cpu_capability", "")
    return (f"{about['cpu']} ({flags}), {about['cores']} cores, torch {about['torch']} with {about['torch_threads']} "
            f"threads, timm {about.get('timm', '?')}, gradio {about.get('gradio', '?')}, Python {about['python']}, "
            f"commit {about.get('commit', '?')}")


def load_line(models_data: dict | None, app: dict | None) -> str:
    """The machine's 1-minute load average around each benchmark: above the
    number of cores, other work was competing for the CPU."""
    parts = []
    for label, data in (("model benchmark", models_data), ("app benchmark", app)):
        about = (data or {}).get("machine", {})
        start, end = about.get("load_average_start"), about.get("load_average_end")
        if start is not None and end is not None:
            parts.append(f"{label} {start:.1f} -> {end:.1f}")
    return f"1-minute load average (start -> end): {', '.join(parts)}." if parts else ""


def write_results(path: Path, models_data, models_problem, app, app_problem, seconds: float,
                  sections: list[str] = ()) -> str:
    app_parts = app_sections(app, app_problem)
    today = datetime.date.today().isoformat()
    text = f"""# Benchmark results

Written by `make bench` (`benchmarks/run_all.py`) on {today}, in {seconds / 60:.1f} minutes, on:
{machine_line(models_data, app)}.
{load_line(models_data, app)}

Every ratio compares two things measured in the same process, interleaved
(a, b, a, b, ...), as medians; a shared machine's load then affects both
alike. Absolute milliseconds move with the load (here +-10 % from run to run,
more while other work runs), the ratios much less. Re-run with `make bench`.

## Model forward, ours / timm

`benchmarks/bench_models.py`: the same random weights (timm's model, BatchNorm
statistics measured on random images, converted into ours), fp32, the model's
input size, `torch.inference_mode()`, on a worker thread as the app runs its
models; ours prepared as the app runs it (`models.prepare_for_inference`: the
EfficientNets with BatchNorm folded into the convolutions, channels-last),
timm's as it comes. Each row: 3 to 40 interleaved rounds (a third of that for batch 8),
about 20 s at most. EfficientNet-Lite0's reference is timm's
`tf_efficientnet_lite0`. Goals apply to the median ratio; the ratio of the
fastest runs beside it shows how far the machine's load moved it.

{forward_section(models_data, models_problem)}

## capture_attention / plain forward

The same script: a Swin forward inside `models.capture_attention` (explicit
softmax, every block's attention kept) against the plain (fused) forward, on
one image as the app's views run it.

{capture_section(models_data, models_problem)}

## One request through the app

`benchmarks/bench_app.py`: `python app.py` in a subprocess (loopback,
`HF_HUB_OFFLINE=1`), `/classify` with `assets/examples/cat.jpg` and top-5
through `gradio_client`, against the bare forward of the same model on the
same preprocessed image (batch 1, the app's thread count) in the benchmark's
process, the two interleaved. Swin-T's weights: timm's Swin-T with random
weights, saved as timm publishes it, served by the tests' loopback fake Hub
and downloaded into the Hub cache the app reads (its forward costs what the
pretrained one does).

{app_parts['request']}

*request - forward* is what the app and the client add to the model. The
figures use `gradio_client.Client(url, ssl_verify=<one ssl.SSLContext>)`,
checking for the result every 2 ms (`bench_app.polling_every`). As it comes
(column *as it comes*), gradio_client checks its message queue every 50 ms,
so a result that has come waits for the next check (0 to 50 ms), and it builds a
fresh TLS context, with the CA certificates loaded (~20 ms each here), for
each of the three HTTP calls of every request, even to an `http://` URL. A
browser has neither cost. *raw
HTTP* makes the same three calls (upload, join the queue, read the event
stream) on a kept-alive connection without polling: the server's own time.
The second table: the Swin views through the app. The views are painted
into figures (frames) that matplotlib draws once per architecture and stage
(`demo/frames.py`), so a click costs a few NumPy and Pillow operations;
`bench_views.py` below measures them against a forward.

## Cold start

The same script, same app process: from starting `python app.py` with an
empty Hub cache except the Swin-T checkpoint above.

{app_parts['cold']}

## Resident memory

{app_parts['memory']}

The app hands the memory of a model it drops back to the kernel
(`demo/memory.py`, `malloc_trim`), and runs its forwards on a few threads of
its own (`demo/cores.py`), so that glibc does not keep freed activations in
an arena per Gradio worker thread.

## Throughput: 8 clients at once / one client in a row

The same app: one client sending requests one after the other, then 8 clients
(threads, each its own `gradio_client.Client`) sending the same number of
requests together (48: 6 per client), alternately, twice; throughput =
requests / wall time. The app (`demo/batching.py`, `demo/cores.py`) gives a
request that finds the CPU idle one forward with every thread; requests that
arrive while forwards run wait, and each core that comes free takes its share
of them (up to 8) as a single-threaded forward, so both cores stay busy with
the cheaper single-threaded forwards under load. The clients are threads of
the benchmark's process, each a `gradio_client.Client` checking for its
result every 2 ms as above (as it comes, one client in a row would wait 0 to
50 ms after every result, the server idle). As `timeit` does, the process's
garbage collector is off while they run: one full collection there (200-320
ms: the process holds timm and the reference models) stopped all 8 at once,
which separate users never do. The app's own long-lived objects are frozen out of its collector
at start (`demo.ui.serve`).

{app_parts['throughput']}

The second table, measured in the benchmark's process on the same weights
and image, is what the cores can give: many clients can at most gain the
ratio of one client's request time to a forward's share of the cores (the
*ceiling*), and less by what the server (Gradio's HTTP, queue and event
stream) and the 8 clients themselves (on the same cores) take. Its last
columns measure those: the CPU time of the app's process (every thread:
forwards, web server, preprocessing) and of the benchmark's process (the
clients) while the 8 clients ran, per request; and the *bound*: the
requests per second the cores could serve at the app's CPU time per
request, if the clients cost nothing, over one client's rate in a row.
"""
    text += "".join(f"\n{section}\n" for section in sections)
    path.write_text(text, encoding="utf-8")
    return text


SECTION_TIMEOUT_S = 600
OWN_ARGUMENTS = {"bench_models", "bench_app"}  # run by main() with their arguments


def other_sections() -> tuple[list[str], list[str]]:
    """The Markdown sections of every other ``bench_*.py`` with a ``main()``
    (see the module's docstring); (sections, problems)."""
    sections, problems = [], []
    for path in sorted(HERE.glob("bench_*.py")):
        if path.stem in OWN_ARGUMENTS or "def main(" not in path.read_text(encoding="utf-8"):
            continue
        command = [sys.executable, "-c", f"from benchmarks.{path.stem} import main; main()"]
        print(f"\n$ python -c 'from benchmarks.{path.stem} import main; main()'", flush=True)
        start = time.perf_counter()
        try:
            completed = subprocess.run(command, cwd=ROOT, timeout=SECTION_TIMEOUT_S, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            problems.append(f"{path.name} ran out of its {SECTION_TIMEOUT_S} s")
            sections.append(f"## {path.stem}\n\nNot measured: it ran out of its {SECTION_TIMEOUT_S} s.")
            continue
        print(completed.stderr[-2000:], flush=True)
        print(f"({path.name}: {time.perf_counter() - start:.0f} s)", flush=True)
        printed = completed.stdout
        start_of_section = printed.find("## ")
        if completed.returncode or start_of_section < 0:
            problems.append(f"{path.name} exited with {completed.returncode}")
            sections.append(f"## {path.stem}\n\nNot measured: it exited with {completed.returncode}.")
        else:
            sections.append(printed[start_of_section:].strip())
    return sections, problems


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke test of the benchmarks)")
    parser.add_argument("--output", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--models-timeout", type=float, default=450, help="seconds (the whole run: ~10 minutes)")
    parser.add_argument("--app-timeout", type=float, default=240)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model_args = ["--repeats", "5", "--budget", "5"] if args.quick else []
    app_args = ["--requests", "8", "--budget", "10", "--rounds", "1", "--throughput-requests", "16"] if args.quick else []
    section_problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        models_data, models_problem = run("bench_models.py", model_args, Path(tmp) / "models.json",
                                          args.models_timeout)
        app, app_problem = run("bench_app.py", app_args, Path(tmp) / "app.json", args.app_timeout)
        sections, section_problems = other_sections()
    text = write_results(Path(args.output), models_data, models_problem, app, app_problem,
                         time.perf_counter() - start, sections)
    print("\n" + text)
    print(f"Written to {args.output}")
    if models_problem or app_problem or section_problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
