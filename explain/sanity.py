"""The parameter-randomisation sanity check (Adebayo et al., 2018).

A map that explains the *model* must change when the model's learned
parameters are replaced by random ones. Cascading randomisation goes
top-down: the classifier first, then block after block towards the input;
at the end every parameter is random. A method whose maps stay similar
(Spearman rank correlation of the maps >= 0.5 on photos) shows the image's
structure, not what the model learned, and is not offered in the app.

``python -m explain.sanity`` recomputes the verdicts for the bundled
EfficientNet-Lite0 on assets/examples and rewrites
``explain/sanity_results.json``, which the app reads; tests/test_explain_sanity.py
checks that the file still says what the models do.
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


def correlations(model: nn.Module, inputs: list[torch.Tensor], method: str, targets: list[int],
                 seed: int = 0, **options) -> list[float]:
    """Per image: Spearman of the trained model's map with the fully
    randomised model's (the end of the cascade), same class."""
    from . import saliency

    randomised = randomise(model, None, seed)
    return [spearman(saliency(model, x, method, t, **options), saliency(randomised, x, method, t, **options))
            for x, t in zip(inputs, targets)]


def verdict(values: list[float]) -> bool:
    """Passes when the maps changed on the photos: mean correlation below the threshold."""
    return float(np.mean(values)) < THRESHOLD


def load_results(path: Path = RESULTS_FILE) -> dict:
    """``{architecture: {method: {"passed": bool, "spearman": [...], "mean": float}}}``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def failing_methods(architecture: str) -> dict[str, str]:
    """Methods that failed the sanity check for ``architecture``, with a
    sentence saying why, for the UI."""
    results = load_results().get(architecture, {})
    return {method: (f"{method} is not offered: its maps barely change when the model's weights are "
                     f"randomised (mean Spearman {entry['mean']:.2f} >= {THRESHOLD} on the example photos), "
                     "so they show the image rather than what the model learned.")
            for method, entry in results.items() if not entry["passed"]}


def example_inputs(architecture: str = "efficientnet_lite0"):
    """(model prepared for inference, input tensors, top-1 classes) for the
    bundled example photos."""
    from PIL import Image

    import models

    model = models.prepare_for_inference(models.create_model(architecture, pretrained=True))
    transform = models.create_transform(model.spec)
    folder = Path(__file__).resolve().parent.parent / "assets" / "examples"
    inputs = [transform(Image.open(p).convert("RGB")).unsqueeze(0)
              for p in sorted(folder.iterdir()) if p.suffix in (".jpg", ".png")]
    with torch.inference_mode():
        targets = [int(model(x).argmax()) for x in inputs]
    return model, inputs, targets


def main(architecture: str = "efficientnet_lite0") -> dict:
    import explain

    model, inputs, targets = example_inputs(architecture)
    results = load_results()
    table = {}
    for method in explain.methods_for(model):
        values = correlations(model, inputs, method, targets)
        table[method] = {"passed": verdict(values), "mean": round(float(np.mean(values)), 4),
                         "spearman": [round(v, 4) for v in values]}
        print(f"{method:22s} mean {np.mean(values):.3f} {'pass' if table[method]['passed'] else 'FAIL'} "
              f"{[round(v, 2) for v in values]}")
    results[architecture] = table
    RESULTS_FILE.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return table


if __name__ == "__main__":
    main()
