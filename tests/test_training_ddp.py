"""The same command on 2 processes (torchrun, DistributedDataParallel over
gloo, CPU) and on 1 gives the same model. The 1-process run is the same
command's ``main`` in this process, on one torch thread (as
``OMP_NUM_THREADS=1``), while torchrun starts its 2 processes: most of the
test's time is starting Python and importing torch, so one start fewer,
and the two runs overlapping, make it shorter.

Each of the 2 processes takes half of every global batch of the same seeded
permutation and DDP averages the gradients, so the runs differ only in the
order of floating-point sums: after the steps below the weights agree
within ``WEIGHT_TOLERANCE`` and the validation accuracy within one image.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
# SGD, not Adam: Adam's step is invariant to the gradient's scale, so a
# gradient summed instead of averaged across the processes would pass with
# it. With SGD a summed gradient is a doubled learning rate: measured here,
# lr 0.05 against 0.1 moves the weights apart by ~5e-2 after these 12 steps,
# while the 2 processes and the 1 (sums in another order) differ by ~6e-8,
# well within WEIGHT_TOLERANCE.
WEIGHT_TOLERANCE = 1e-4
ARGS = ["scratch", "--dataset", "digits", "--embed-dim", "16", "--depths", "2,2", "--num-heads", "1,2",
        "--window-size", "4", "--patch-size", "2", "--image-size", "16", "--drop-path-rate", "0", "--no-augment",
        "--optimizer", "sgd", "--lr", "0.05", "--batch-size", "32", "--epochs", "1", "--max-steps", "12",
        "--seed", "0"]


def start_torchrun(out: Path, processes: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    return subprocess.Popen([*launcher, "-m", "training", *ARGS, "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow  # starts torchrun with two processes
def test_two_processes_agree_with_one(tmp_path, one_torch_thread, monkeypatch):
    from training.__main__ import main

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # this process is the plain, 1-process run
        monkeypatch.delenv(name, raising=False)
    torchrun = start_torchrun(tmp_path / "two", 2)
    try:
        assert main([*ARGS, "--out", str(tmp_path / "one")]) == 0
        output, _ = torchrun.communicate(timeout=240)
    finally:
        if torchrun.poll() is None:  # a failure or a time-out here: torchrun stops its workers on SIGTERM
            torchrun.terminate()
            output, _ = torchrun.communicate(timeout=30)
    assert torchrun.returncode == 0, output[-6000:]
    one, two = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("one", "two"))
    assert one.keys() == two.keys()
    difference = max((one[k] - two[k]).abs().max().item() for k in one)
    assert difference <= WEIGHT_TOLERANCE, difference
    m1, m2 = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    assert m2["processes"] == 2 and m1["processes"] == 1 and m1["steps"] == m2["steps"] == 12
    assert abs(m1["val_accuracy"] - m2["val_accuracy"]) <= 1 / m1["val_images"] + 1e-9
    assert m1["train_loss"][0] == pytest.approx(m2["train_loss"][0], abs=1e-4)
