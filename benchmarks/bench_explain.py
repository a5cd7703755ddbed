"""What an explanation costs, as a ratio to a plain forward of the same model
in the same process (interleaved rounds, medians), and prints a markdown
section for benchmarks/RESULTS.md.

    python -m benchmarks.bench_explain [--rounds 5]

Models: EfficientNet-Lite0 (the bundled weights) and Swin-T (random weights:
the cost does not depend on them), both prepared as the app runs them
(``models.prepare_for_inference``), 224 x 224, one image. The plain forward:
``model(x)`` under ``torch.inference_mode()``, batch 1. Goals (issue 15):
Grad-CAM <= 3x, rollout <= 1.5x, deletion + insertion with 16 steps each
<= 20x.

By default torch runs with the app's threads (one per core) and wall time is
measured: run it on a quiet machine. ``--threads 1`` measures the CPU time
of the one thread instead, which other work on the machine barely moves
(but a single thread is not how the app runs: on one thread some of
Lite0's 1 x 1 convolutions take a slower path at batches under 16).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

import explain
import models
from demo.explaining import faithfulness_scores
from explain import faithfulness

GOALS = {"gradcam": 3.0, "rollout": 1.5, "deletion+insertion": 20.0}
CURVE_BATCH = faithfulness.DEFAULT_BATCH  # images per forward in the curves, as the app
CLOCK = time.perf_counter  # main() sets time.thread_time for --threads 1


def timed(function) -> float:
    """Seconds of ``CLOCK``: wall time, or with ``--threads 1`` the CPU time
    of this thread, which runs torch: on a machine shared with other work, wall
    time measures the others as much as us (a Lite0 forward took 17 ms to
    1.2 s in one run); the thread's CPU time counts only while it runs."""
    start = CLOCK()
    function()
    return CLOCK() - start


def measure(model, x, work, rounds: int) -> tuple[float, float, float]:
    """(median forward s, median work s, median of the per-round ratios)."""
    def forward():
        with torch.inference_mode():
            model(x)

    forward(), work()  # warm-up: first calls allocate and pick kernels
    forwards, works = [], []
    for _ in range(rounds):
        forwards.append(timed(forward))
        works.append(timed(work))
    ratios = [w / f for w, f in zip(works, forwards)]
    return statistics.median(forwards), statistics.median(works), statistics.median(ratios)


def cases(rounds: int, quick: bool = False):
    lite0 = models.prepare_for_inference(models.create_model("efficientnet_lite0", pretrained=True))
    torch.manual_seed(0)
    swin = models.prepare_for_inference(models.create_model("swin_tiny_patch4_window7_224"))
    x = torch.randn(1, 3, 224, 224)
    rows = []
    for name, model in (("EfficientNet-Lite0", lite0), ("Swin-T", swin)):
        methods = ["gradcam", "gradcam_pp", "rollout", "grad_rollout"] if model is swin else ["gradcam", "gradcam_pp"]
        for method in methods:
            explainer = explain.make(model, method)
            rows.append((name, method, "1", *measure(model, x, lambda: explainer.attribute(x, 1), rounds)))
        saliency = explain.saliency(model, x, "gradcam", 1)
        for dtype, label in ((None, "float32, as the app"), (torch.bfloat16, "bfloat16 autocast")):
            rows.append((name, "deletion+insertion", f"30 (16 steps each), {CURVE_BATCH} per forward, {label}", *measure(
                model, x, lambda: faithfulness.deletion_insertion(model, x, saliency, 1, steps=16,
                                                                  batch_size=CURVE_BATCH, dtype=dtype), rounds)))
        rows.append((name, "the same + random map's", f"62, {CURVE_BATCH} per forward, float32", *measure(
            model, x, lambda: faithfulness.evaluate(model, x, saliency, 1, steps=16, batch_size=CURVE_BATCH),
            max(2, rounds // 2))))
        # A method change on the same image: the random map's curves come from
        # demo.explaining's cache (filled by the warm-up call), only the map's own run.
        rows.append((name, "the same, method changed (random map's curves cached)",
                     f"30, {CURVE_BATCH} per forward, float32", *measure(
                         model, x, lambda: faithfulness_scores(name, True, model, x, saliency, 1, 16),
                         max(2, rounds // 2))))
        if quick:
            continue
        # The slow ones, once each for the record (not goals).
        for method, options, batch in (("integrated_gradients", {}, "16 (32 steps)"),
                                       ("smoothgrad", {}, "8 (16 samples)"), ("occlusion", {}, "16 (49 squares)")):
            explainer = explain.make(model, method, **options)
            rows.append((name, method, batch, *measure(model, x, lambda: explainer.attribute(x, 1), 1)))
    return rows


def main(argv=None) -> str:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="skip the methods that have no goal and take long")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: one per core, as the app; 1: CPU time of one thread)")
    args = parser.parse_args(argv)
    from demo.service import available_cpus

    global CLOCK
    threads = args.threads or available_cpus()
    torch.set_num_threads(threads)
    CLOCK = time.thread_time if threads == 1 else time.perf_counter
    clock = ("CPU time of the one thread that runs everything (torch with 1 thread)" if threads == 1
             else f"wall time, torch with {threads} threads as the app")
    load_before = os.getloadavg()[0]
    rows = cases(args.rounds, args.quick)
    load_after = os.getloadavg()[0]
    lines = [
        "## Explanations, as a multiple of a plain forward",
        "",
        f"`benchmarks/bench_explain.py --rounds {args.rounds}{' --quick' if args.quick else ''}"
        f"{' --threads 1' if threads == 1 else ''}` (run on its own, not by `make bench`): each method "
        "against `model(x)` of the same model under `torch.inference_mode()`, batch 1, 224 x 224, interleaved "
        f"rounds in one process, median of the per-round ratios, in {clock}; both models prepared as the app "
        "runs them. Lite0 with its bundled weights, Swin-T with random ones. The batch column is the images "
        "per forward inside the method. The rows without a goal ran 1 round. "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}; "
        f"1-minute load average {load_before:.1f} -> {load_after:.1f}.",
        "",
        f"| model | method | batch | forward {'CPU ' if threads == 1 else ''}ms | method {'CPU ' if threads == 1 else ''}ms | ratio | goal |  |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, method, batch, forward, work, ratio in rows:
        goal = GOALS.get(method)
        verdict = "" if goal is None else ("met" if ratio <= goal else "not met")
        lines.append(f"| {name} | {method} | {batch} | {forward * 1000:.1f} | {work * 1000:.1f} | **{ratio:.2f}** | "
                     f"{'<= ' + str(goal) if goal else '-'} | {verdict} |")
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    main()
