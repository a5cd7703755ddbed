"""demo/memory.py: with glibc's malloc set as app.py sets it with APP_TUNE_MALLOC=1, a
forward's freed activations serve the next forward instead of going back to
the kernel, so the next one does not fault its pages in again; a one-off
large buffer still goes back when freed, and release_free_memory hands back
what a dropped model leaves inside the heap.

Run in a fresh interpreter: the settings are the process's, and they must
come before its threads start, as in app.py.
"""
from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys

import pytest

from conftest import ROOT

# Single-threaded EfficientNet-Lite0 forwards at batch 3 on a core worker, as
# the app runs requests that queue (untrained: the weights do not matter); the
# page faults of each forward (ru_minflt: pages touched for the first time).
PROBE = """
import json, resource, sys
from demo.memory import configure_malloc
configured = configure_malloc() if {configure} else False
import torch
import models
from demo.cores import CoreWorkers

model = models.create_model("efficientnet_lite0").eval()
x = torch.rand(3, 3, 224, 224)
def forward():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.inference_mode():
        model(x)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
worker = CoreWorkers(1)
faults = [worker.run(forward) for _ in range(8)]
print(json.dumps(dict(configured=configured, faults=faults)))
"""


def probe(configure: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), configure=configure)],
                         capture_output=True, text=True, timeout=300, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc_only
def test_freed_activations_are_reused_not_faulted_in_again():
    default, configured = probe(configure=False), probe(configure=True)
    assert configured["configured"] is True
    # After two forwards to settle: as glibc comes, each forward faults in
    # thousands of pages (7,000-19,000 here: 30-75 MB)...
    default_faults = statistics.median(default["faults"][2:])
    assert default_faults > 2000, default
    # ...and set as app.py sets it (APP_TUNE_MALLOC=1), nearly none.
    assert statistics.median(configured["faults"][2:]) < default_faults / 10, (configured, default)


# Resident memory (VmRSS, MB) after each step, in a thread as the app's requests run.
RETURN_PROBE = """
import json, sys, threading
from demo.memory import configure_malloc, release_free_memory
assert configure_malloc()
import torch

def resident():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
steps = {{}}
def run():
    steps["start"] = resident()
    big = torch.ones(75 * 2**20)  # 300 MB: a huge upload's pixels
    steps["big"] = resident()
    del big
    steps["big freed"] = resident()
    # 300 MB of 4 MB blocks, a model's weights, each followed by a small block
    # that stays: freed, they are holes inside the heap, not its top.
    weights, kept = [], []
    for _ in range(75):
        weights.append(torch.ones(2**20))
        kept.append(torch.ones(1000))
    steps["model"] = resident()
    del weights
    steps["model dropped"] = resident()
    steps["released"] = release_free_memory()
    steps["after release"] = resident()
thread = threading.Thread(target=run)
thread.start()
thread.join()
print(json.dumps(steps))
"""


@glibc_only
def test_large_buffers_and_dropped_models_go_back_to_the_kernel():
    out = subprocess.run([sys.executable, "-c", RETURN_PROBE.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=120, check=True, cwd=ROOT)
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    assert steps["big"] - steps["start"] > 250, steps
    assert steps["big freed"] - steps["start"] < 50, steps  # mapped on its own, unmapped when freed
    assert steps["model"] - steps["start"] > 250, steps
    assert steps["model dropped"] - steps["start"] > 250, steps  # free blocks inside the heap: kept...
    assert steps["released"] is True
    assert steps["after release"] - steps["start"] < 50, steps  # ...until handed back


def test_elsewhere_it_says_it_did_nothing(monkeypatch):
    from demo import memory

    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.configure_malloc() is False
    assert memory.release_free_memory() is False
