"""demo/memory.py: a one-off large buffer goes back to the kernel when freed,
and release_free_memory hands back what a dropped model leaves inside the
heap. Run in a fresh interpreter, in a thread, as the app's requests run.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from conftest import ROOT

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")


# Resident memory (VmRSS, MB) after each step, in a thread as the app's requests run.
RETURN_PROBE = """
import json, sys, threading
from demo.memory import release_free_memory
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
    out = subprocess.run([sys.executable, "-c", RETURN_PROBE.replace("{{", "{").replace("}}", "}")], capture_output=True, text=True,
                         timeout=120, check=True, cwd=ROOT)
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    assert steps["big"] - steps["start"] > 250, steps
    assert steps["big freed"] - steps["start"] < 50, steps  # mapped on its own, unmapped when freed
    assert steps["model"] - steps["start"] > 250, steps
    # A dropped model's blocks: handed back, by glibc itself or by release_free_memory.
    assert steps["after release"] - steps["start"] < 50, steps


def test_elsewhere_it_says_it_did_nothing(monkeypatch):
    from demo import memory

    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.release_free_memory() is False
