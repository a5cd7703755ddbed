"""Training figures: the bundled digits Swin (validation accuracy, measured
again on its validation split, and the seconds of the recorded training
run, or of a new run with --retrain), and EfficientNet-Lite0 fine-tuning
throughput in images per second, frozen backbone with cached features and
unfrozen, as ratios to a plain forward.

    python benchmarks/bench_training.py [--retrain]

Prints a Markdown section (appended by hand to benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

import torch  # noqa: E402

BUNDLED = ROOT / "assets" / "models" / "swin_digits"
ACCURACY_GOAL, SECONDS_GOAL = 0.97, 300
IMAGES, BATCH, EPOCHS = 64, 16, 3


def digits_row(retrain: bool) -> dict:
    import models
    import training
    from models.transforms import create_transform
    from training.recipes import load_trained

    recorded = json.loads((BUNDLED / "metrics.json").read_text())
    command = (BUNDLED / "COMMAND").read_text().strip()
    model = load_trained(BUNDLED)
    data = training.digits_dataset()
    _, val = training.stratified_split(data.labels, 0.2, seed=recorded["recipe"]["seed"])
    _, probs, labels = training.evaluate(model, data.subset(val).with_transform(create_transform(model.spec)))
    row = dict(val_accuracy=float((probs.argmax(1) == labels).mean()), recorded_seconds=recorded["seconds"],
               parameters=sum(p.numel() for p in model.parameters()), command=command,
               size_mb=(BUNDLED / "model.safetensors").stat().st_size / 2**20, load_before=os.getloadavg()[0])
    if retrain:
        with tempfile.TemporaryDirectory() as tmp:
            argv = shlex.split(command.replace(".venv/bin/python", sys.executable))
            argv[argv.index("--out") + 1] = str(Path(tmp) / "run")
            started = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
            row["retrain_seconds"] = time.perf_counter() - started
            row["retrain_val_accuracy"] = json.loads((Path(tmp) / "run" / "metrics.json").read_text())["val_accuracy"]
    row["load_after"] = os.getloadavg()[0]
    return row


def lite0_rows() -> dict:
    """Images per second over ``IMAGES`` random 224 x 224 images of
    ``BATCH``: a plain forward (eval, no gradients); fine-tuning the head on
    cached features for ``EPOCHS`` epochs (features once, then the head:
    EPOCHS x IMAGES images); fine-tuning everything (forward + backward +
    SGD step, train mode). Tensors are made beforehand, so decoding and
    augmentation are not in these figures."""
    import models
    from training import Recipe, fit
    from training.recipes import HeadOnly, cached_features, freeze_backbone, replace_classifier

    torch.manual_seed(0)
    x, y = torch.randn(IMAGES, 3, 224, 224), torch.randint(0, 3, (IMAGES,))
    data = torch.utils.data.TensorDataset(x, y)
    model = replace_classifier(models.create_model("efficientnet_lite0", pretrained=True), 3)
    recipe = Recipe(epochs=EPOCHS, batch_size=BATCH, lr=0.01)

    def plain():
        model.eval()
        with torch.no_grad():
            for i in range(0, IMAGES, BATCH):
                model(x[i:i + BATCH])

    def frozen_cached():
        freeze_backbone(model)
        features = cached_features(model, data, BATCH, progress=False)
        fit(HeadOnly(model), features, features, recipe, progress=False)

    def unfrozen():
        model.requires_grad_(True)
        fit(model, data, torch.utils.data.TensorDataset(x[:BATCH], y[:BATCH]),
            Recipe(epochs=1, batch_size=BATCH, lr=0.01), progress=False)

    plain()  # warm-up
    timings = {}
    for name, fn, images in (("plain", plain, IMAGES), ("frozen", frozen_cached, EPOCHS * IMAGES),
                             ("plain_again", plain, IMAGES), ("unfrozen", unfrozen, IMAGES)):
        started = time.perf_counter()
        fn()
        timings[name] = images / (time.perf_counter() - started)
    forward = (timings["plain"] + timings["plain_again"]) / 2
    return dict(forward=forward, frozen=timings["frozen"], unfrozen=timings["unfrozen"])


def section(digits: dict, lite0: dict) -> str:
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    lines = [
        "## Training",
        "",
        "`benchmarks/bench_training.py`. The bundled `swin_digits` (assets/models/swin_digits), made by:",
        "",
        f"    {digits['command']}",
        "",
        "| figure | value | goal | |",
        "|---|---|---|---|",
        f"| validation accuracy (360 digits never trained on, measured now) | **{digits['val_accuracy']:.2%}** | "
        f">= {ACCURACY_GOAL:.0%} | {met(digits['val_accuracy'] >= ACCURACY_GOAL)} |",
        f"| training seconds, recorded run | **{digits['recorded_seconds']:.0f}** | <= {SECONDS_GOAL} | "
        f"{met(digits['recorded_seconds'] <= SECONDS_GOAL)} |",
    ]
    if "retrain_seconds" in digits:
        lines.append(f"| training seconds, run again now (accuracy {digits['retrain_val_accuracy']:.2%}) | "
                     f"**{digits['retrain_seconds']:.0f}** | <= {SECONDS_GOAL} | "
                     f"{met(digits['retrain_seconds'] <= SECONDS_GOAL)} |")
    lines += [
        f"| parameters / file size | {digits['parameters']:,} / {digits['size_mb']:.2f} MB | - | - |",
        "",
        f"EfficientNet-Lite0 fine-tuning, {IMAGES} random 224 x 224 images, batch {BATCH}, {torch.get_num_threads()} "
        "threads (images per second; tensors made beforehand, so no decoding or augmentation):",
        "",
        "| | images/s | / plain forward |",
        "|---|---|---|",
        f"| plain forward (eval, no gradients) | {lite0['forward']:.1f} | 1.00 |",
        f"| frozen backbone, features cached, {EPOCHS} epochs of the head | {lite0['frozen']:.1f} | "
        f"**{lite0['frozen'] / lite0['forward']:.2f}** |",
        f"| unfrozen (forward + backward + step) | {lite0['unfrozen']:.1f} | "
        f"**{lite0['unfrozen'] / lite0['forward']:.2f}** |",
        "",
        f"1-minute load average {digits['load_before']:.1f} -> {digits['load_after']:.1f} during the digits part "
        "(the machine was shared: absolute figures are noisy, ratios less so).",
    ]
    return "\n".join(lines)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--retrain", action="store_true", help="run the digits command again and time it")
    args = parser.parse_args(argv)
    text = section(digits_row(args.retrain), lite0_rows())
    print(text)
    return text


if __name__ == "__main__":
    main()
