"""``python -m explain FOLDER --architecture ... --method ... [--target ...] --out DIR``

For every image of FOLDER: the map for the target class, its overlay on the
model input (``<name>.<method>.png``) and the raw map (``<name>.<method>.npy``,
float32 [H, W]) in DIR, and one row of ``scores.csv``: class, probability,
deletion / insertion AUC of the map and of a random map, seconds.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

import models

from . import METHODS, ExplainError, check_method, faithfulness, make, pictures, resolve_target

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
COLUMNS = ["image", "architecture", "method", "class", "class_index", "probability", "deletion_auc",
           "insertion_auc", "random_deletion_auc", "random_insertion_auc", "seconds"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m explain", description=__doc__.split("\n\n")[1])
    parser.add_argument("folder", type=Path, help="folder of images (jpg, png, webp, ...)")
    parser.add_argument("--architecture", default=models.OFFLINE_DEFAULT,
                        help=f"one of models.list_models() (default {models.OFFLINE_DEFAULT}, works offline)")
    parser.add_argument("--method", default="gradcam", choices=METHODS)
    parser.add_argument("--target", default="top1", help="class name, class index, or top1 (default)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the overlays, maps and scores.csv")
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity, 0 to 1")
    parser.add_argument("--steps", type=int, default=faithfulness.DEFAULT_STEPS,
                        help="deletion / insertion steps (default 16)")
    parser.add_argument("--untrained", action="store_true",
                        help="use random weights (for architectures whose weights cannot be had)")
    return parser.parse_args(argv)


def load_model(architecture: str, untrained: bool) -> torch.nn.Module:
    spec = models.get_spec(architecture)
    pretrained = not untrained and models.weights_status(spec.name) != "untrained"
    return models.prepare_for_inference(models.create_model(spec.name, pretrained=pretrained))


def explain_folder(folder: Path, architecture: str, method: str, target: str, out: Path,
                   opacity: float = 0.5, steps: int = faithfulness.DEFAULT_STEPS, untrained: bool = False,
                   log=print) -> list[dict]:
    """Explain every image of ``folder``; returns the CSV's rows."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ExplainError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); point at a folder of photos.")
    model = load_model(architecture, untrained)
    check_method(model, method)
    explainer = make(model, method)
    transform = models.create_transform(model.spec)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in paths:
        try:
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            log(f"skipped {path.name}: not an image this tool can read ({error.__class__.__name__})")
            continue
        start = time.perf_counter()
        x = transform(image).unsqueeze(0)
        with torch.inference_mode():
            logits = model(x)
        index = resolve_target(model, target, logits)
        saliency = explainer.attribute(x, index)[0].numpy()
        scores = faithfulness.evaluate(model, x, saliency, index, steps=steps)
        seconds = time.perf_counter() - start
        picture = pictures.overlay(pictures.model_input_image(x, model.spec.mean, model.spec.std), saliency, opacity)
        Image.fromarray(picture).save(out / f"{path.stem}.{method}.png")
        np.save(out / f"{path.stem}.{method}.npy", saliency.astype(np.float32))
        row = {"image": path.name, "architecture": model.spec.name, "method": method,
               "class": model.spec.labels[index], "class_index": index,
               "probability": round(float(logits.softmax(-1)[0, index]), 6),
               **{k: round(v, 6) for k, v in scores.scores().items()}, "seconds": round(seconds, 3)}
        rows.append(row)
        log(f"{path.name}: {row['class']} p={row['probability']:.3f} deletion {row['deletion_auc']:.3f} "
            f"(random {row['random_deletion_auc']:.3f}) insertion {row['insertion_auc']:.3f} "
            f"(random {row['random_insertion_auc']:.3f}) {seconds:.1f} s")
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        explain_folder(args.folder, args.architecture, args.method, args.target, args.out, args.opacity,
                       args.steps, args.untrained)
    except (ExplainError, models.WeightsUnavailableError, ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
