"""The parameter-randomisation sanity check (Adebayo et al., 2018).

A map that explains the *model* must change when the model's learned
parameters are replaced by random ones. Cascading randomisation goes
top-down: the classifier first, then block after block towards the input;
at the end every parameter is random. A method whose maps stay similar
shows the image's structure, not what the model learned, and is not offered
in the app.

The rule, per photo: a method passes only when on *every* example photo the
Spearman rank correlation of the trained model's map with the fully
randomised model's map is below 0.5 (one photo at or above 0.5 fails it; the
mean is recorded but does not decide). A map that is constant (all equal
after normalisation: it shows nothing) counts as failing on that photo,
whichever model gave it; its correlation is recorded as null.

``python -m explain.sanity [ARCHITECTURE ...]`` (default: the bundled
EfficientNet-Lite0; ``swin_digits`` for the bundled digits Swin, on the
digit photos) recomputes the verdicts on assets/examples and rewrites
``explain/sanity_results.json``, which the app reads;
tests/test_explain_photos.py checks that the file still says what the models do.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

THRESHOLD = 0.5
RESULTS_FILE = Path(__file__).resolve().parent / "sanity_results.json"


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (as Spearman's rho needs)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (Pearson's r of their ranks). A
    constant map ranks nothing above anything: correlation 0."""
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0


def parameterised_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that own parameters, from the output back to the input
    (registration order reversed: the order the layers are built in)."""
    found = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    return found[::-1]


@torch.no_grad()
def randomise(model: nn.Module, count: int | None = None, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with the parameters of its top ``count``
    parameterised modules (all when None) redrawn at random, each tensor from
    a normal distribution with its own mean and standard deviation (the
    scale the layer had, so activations neither vanish nor explode; a
    prepared model's folded convolutions included). The original is untouched."""
    randomised = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    modules = parameterised_modules(randomised)
    for module in modules[:count] if count is not None else modules:
        for parameter in module.parameters(recurse=False):
            mean, std = parameter.float().mean(), parameter.float().std() if parameter.numel() > 1 else 0.0
            noise = torch.randn(parameter.shape, generator=generator) * std + mean
            parameter.copy_(noise.to(parameter.dtype))
    return randomised


def cascade(model: nn.Module, x: torch.Tensor, method: str, target: int, fractions=(0.0, 0.5, 1.0),
            seed: int = 0, **options) -> list[tuple[int, float]]:
    """Cascading randomisation: for each fraction of the parameterised
    modules randomised top-down (0: just the classifier), ``(modules
    randomised, Spearman of the map with the trained model's)``."""
    from . import saliency

    original = saliency(model, x, method, target, **options)
    modules = len(parameterised_modules(model))
    out = []
    for fraction in fractions:
        count = max(1, round(fraction * modules))
        randomised = randomise(model, count, seed)
        out.append((count, spearman(original, saliency(randomised, x, method, target, **options))))
    return out


def constant(values: np.ndarray) -> bool:
    """A map whose values are all equal (or not finite): it shows nothing."""
    values = np.asarray(values, dtype=np.float64)
    return not np.all(np.isfinite(values)) or float(values.max() - values.min()) == 0.0


def correlations(model: nn.Module, inputs: list[torch.Tensor], method: str, targets: list[int],
                 seed: int = 0, **options) -> list[float]:
    """Per image: Spearman of the trained model's map with the fully
    randomised model's (the end of the cascade), same class; NaN where
    either map is constant (it shows nothing, so nothing can be compared)."""
    from . import saliency

    randomised = randomise(model, None, seed)
    out = []
    for x, t in zip(inputs, targets):
        trained, random = saliency(model, x, method, t, **options), saliency(randomised, x, method, t, **options)
        out.append(float("nan") if constant(trained) or constant(random) else spearman(trained, random))
    return out


def verdict(values: list[float | None]) -> bool:
    """Passes when the maps changed on every photo: each correlation below the
    threshold; a constant map (NaN or None) fails."""
    return len(values) > 0 and all(v is not None and np.isfinite(v) and v < THRESHOLD for v in values)


def summary(values: list[float | None]) -> tuple[float | None, float | None]:
    """(mean, max) of the finite correlations; None when there are none."""
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    return (float(np.mean(finite)), float(np.max(finite))) if finite else (None, None)


def load_results(path: Path = RESULTS_FILE) -> dict:
    """``{architecture: {method: {"passed": bool, "spearman": [...], "mean": float, "max": float,
    "constant_maps": int}}}`` (``spearman`` holds null for a photo with a constant map)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def failing_methods(architecture: str) -> dict[str, str]:
    """Methods that failed the sanity check for ``architecture``, with a
    sentence saying why, for the UI."""
    results = load_results().get(architecture, {})
    return {method: reason(method, entry) for method, entry in results.items() if not entry["passed"]}


def reason(method: str, entry: dict) -> str:
    values = entry["spearman"]
    photos = len(values)
    high = sum(v is not None and v >= THRESHOLD for v in values)
    flat = sum(v is None or not np.isfinite(v) for v in values)
    parts = []
    if high:
        parts.append(f"its maps stay similar when the model's weights are randomised (Spearman >= {THRESHOLD} "
                     f"on {high} of the {photos} example photos, up to {entry.get('max') or 0:.2f}), so they show "
                     "the image rather than what the model learned")
    if flat:
        parts.append(f"on {flat} of the {photos} example photos a map is constant, so it shows nothing")
    return f"{method} is not offered: " + "; and ".join(parts or ["it failed the sanity check"]) + "."


def example_photos(architecture: str) -> list[Path]:
    """The example photos a model is checked on, sorted: the handwritten
    digits (digit_*.png) for a digits model, the seven other photos for the
    others."""
    folder = Path(__file__).resolve().parent.parent / "assets" / "examples"
    digits = "digits" in architecture
    return [p for p in sorted(folder.iterdir())
            if p.suffix in (".jpg", ".png") and p.name.startswith("digit_") == digits]


def example_inputs(architecture: str = "efficientnet_lite0"):
    """(model prepared for inference, input tensors, top-1 classes) for the
    bundled example photos."""
    from PIL import Image

    import models

    model = models.prepare_for_inference(models.create_model(architecture, pretrained=True))
    transform = models.create_transform(model.spec)
    inputs = [transform(Image.open(p).convert("RGB")).unsqueeze(0) for p in example_photos(architecture)]
    with torch.inference_mode():
        targets = [int(model(x).argmax()) for x in inputs]
    return model, inputs, targets


def main(architecture: str = "efficientnet_lite0") -> dict:
    """Recompute and record the verdicts for ``architecture`` (the others
    recorded stay as they are)."""
    import explain

    model, inputs, targets = example_inputs(architecture)
    results = load_results()
    table = {}
    for method in explain.methods_for(model):
        values = correlations(model, inputs, method, targets)
        mean, high = summary(values)
        recorded = [round(v, 4) if np.isfinite(v) else None for v in values]
        table[method] = {"passed": verdict(values), "mean": None if mean is None else round(mean, 4),
                         "max": None if high is None else round(high, 4),
                         "constant_maps": sum(v is None for v in recorded), "spearman": recorded}
        print(f"{method:22s} max {high} mean {mean} {'pass' if table[method]['passed'] else 'FAIL'} "
              f"{recorded}", flush=True)
    results[architecture] = table
    RESULTS_FILE.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return table


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or ["efficientnet_lite0"]:
        main(name)
