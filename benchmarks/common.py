"""What the benchmarks share: timing of interleaved runs, percentiles, the
machine's description, Markdown tables.

Timing rules, because a shared CPU is noisy: the things compared run
interleaved (a, b, a, b, ...) so that a machine getting busier or quieter
affects both alike; figures are medians (and p95 where tails matter); every
loop is bounded both in count and in time.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0 to 100), linear between the nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("No values.")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values)


def interleaved_ms(fns: dict[str, Callable[[], object]], *, min_rounds: int = 3, max_rounds: int = 15,
                   budget_s: float = 30.0, warmup: int = 1) -> dict[str, list[float]]:
    """Milliseconds per call of each function, run in turn (a, b, c, a, b, c, ...).

    ``warmup`` untimed rounds first; then at least ``min_rounds`` and at most
    ``max_rounds`` timed rounds, stopping early once ``budget_s`` seconds of
    timed rounds have passed.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    started = time.perf_counter()
    for round_index in range(max_rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
        if round_index + 1 >= min_rounds and time.perf_counter() - started > budget_s:
            break
    return samples


def in_worker_thread(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` run on a fresh thread; its result (or exception).

    The app runs its forwards on worker threads (Gradio's), so the benchmarks
    time them there too. It matters on a loaded machine: PyTorch's OpenMP
    threads driven from a process's main thread spin-wait, and when other
    processes hold the cores a 2-thread forward there can take several times
    longer than on any other thread.
    """
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, name="benchmark-worker")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def load_average() -> float | None:
    """The 1-minute load average (runnable processes; compare with the cores)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict:
    """CPU, cores this process may use, and library versions: the context of every figure."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), "x86_64"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    import torch

    info = dict(cpu=cpu, cores=cores, python=platform.python_version(), torch=torch.__version__,
                torch_threads=torch.get_num_threads(), avx512_bf16=" avx512_bf16" in flags,
                cpu_capability=torch.backends.cpu.get_cpu_capability())
    try:
        import gradio
        import timm

        info.update(gradio=gradio.__version__, timm=timm.__version__)
    except ImportError:
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "**not met**")


def write_json(path: str | os.PathLike | None, data) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2), encoding="utf-8")
