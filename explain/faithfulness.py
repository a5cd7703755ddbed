"""Is the map faithful? Deletion and insertion (Petsiuk et al., RISE, 2018),
beside the same scores for a random map.

- Deletion: pixels are replaced by the baseline in the map's order, most
  salient first; the class probability should fall fast (low area under the
  curve).
- Insertion: starting from the baseline, pixels of the image are revealed in
  the same order; the probability should rise fast (high area).

Baseline: the image blurred (Gaussian, sigma a fortieth of the shorter side,
as RISE's insertion canvas): removing pixels then takes away their detail
without adding the sharp edges a black or grey square would, which a model
may itself respond to. Curves have ``steps`` + 1 points at 0, 1/steps, ...,
1 of the pixels; their ends are shared (deletion at 0 and insertion at 1 are
the image, deletion at 1 and insertion at 0 the baseline), so both curves
together cost ``2 * steps`` images, run through the model in batches.

Precision: ``dtype=torch.bfloat16`` runs the curves' forwards under CPU
autocast: faster where the CPU has bfloat16 instructions, but the areas
moved by up to 0.033 on the example photos with Lite0 (benchmarks/RESULTS.md),
enough to flip a close call against the random map, so the app and the CLI
keep the default, float32.

Random map: uniform noise on a coarse grid (a 32nd of the side, 7 x 7 at 224
pixels) upsampled bilinearly, seeded: as smooth as a Grad-CAM map, so that
the comparison is about *where* the map points, not about how scattered the
removed pixels are (removing scattered single pixels barely changes a
blurred-baseline image). The seed comes from the image itself
(:func:`image_seed`, a hash of its values): the same image always gets the
same random map, and each photo gets its own, so one lucky pattern does not
bias every verdict.

Ties: pixels with the same saliency (Grad-CAM's zero regions, a constant
map) are taken in a seeded random order, not row-major (which would remove
a tied region top-down).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .base import as_batch

DEFAULT_STEPS = 16
# Images per forward in the curves: small batches cost less per image than
# large ones, whose activations leave the caches (benchmarks/RESULTS.md,
# "Explanations", measured on 2 cores).
DEFAULT_BATCH = 8


@dataclass
class Curves:
    fractions: np.ndarray      # [steps + 1] share of pixels removed / revealed
    deletion: np.ndarray       # [steps + 1] class probability
    insertion: np.ndarray      # [steps + 1]

    @property
    def deletion_auc(self) -> float:
        return auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        return auc(self.fractions, self.insertion)


@dataclass
class Faithfulness:
    """The map's curves and the random map's, for one image and class."""
    curves: Curves
    random: Curves
    probability: float         # of the class on the image itself

    def scores(self) -> dict[str, float]:
        return {"deletion_auc": self.curves.deletion_auc, "insertion_auc": self.curves.insertion_auc,
                "random_deletion_auc": self.random.deletion_auc, "random_insertion_auc": self.random.insertion_auc}

    def deletion_verdict(self) -> str:
        return compare_to_random(self.curves.deletion_auc, self.random.deletion_auc, lower_is_better=True)

    def insertion_verdict(self) -> str:
        return compare_to_random(self.curves.insertion_auc, self.random.insertion_auc, lower_is_better=False)

    @property
    def beats_random(self) -> bool:
        """Better than the random map on both curves, by more than :data:`TIE_MARGIN`."""
        return self.deletion_verdict() == "better" and self.insertion_verdict() == "better"


# Two areas closer than this (in probability x fraction of pixels) are a tie: a difference of a few
# thousandths says nothing about the map (a 16-pixel digit whose probability barely moves, say).
TIE_MARGIN = 0.01


def compare_to_random(area: float, random_area: float, lower_is_better: bool) -> str:
    """``"better"``, ``"worse"`` or ``"tie"`` (within :data:`TIE_MARGIN`) for a map's area against the random map's."""
    gain = (random_area - area) if lower_is_better else (area - random_area)
    return "tie" if abs(gain) <= TIE_MARGIN else ("better" if gain > 0 else "worse")


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area under ``values`` over ``fractions`` (0 to 1)."""
    values, fractions = np.asarray(values, dtype=np.float64), np.asarray(fractions, dtype=np.float64)
    return float(((values[1:] + values[:-1]) * np.diff(fractions)).sum() / 2)


def blurred_baseline(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, C, H, W]`` blurred: the baseline both curves use. The same
    Gaussian as torchvision's ``gaussian_blur`` (reflected edges), applied as
    two 1-D passes, cheaper than its one 2-D kernel (benchmarks/RESULTS.md)."""
    sigma = max(min(x.shape[-2:]) / 40, 1.0)
    size = 2 * int(round(2 * sigma)) + 1
    half = size // 2
    steps = torch.linspace(-half, half, size, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (steps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, [half, half, half, half], mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)


def random_map(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A seeded smooth random map ``[H, W]`` in [0, 1] (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    grid = (max(1, round(size[0] / 32)), max(1, round(size[1] / 32)))
    coarse = torch.rand((1, 1, *grid), generator=generator)
    fine = F.interpolate(coarse, size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return fine.numpy().astype(np.float32)


def image_seed(x: torch.Tensor) -> int:
    """A seed from the image's values (SHA-256 of its float32 bytes): the
    same image, the same seed; another image, another seed."""
    data = x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") & (2**63 - 1)


def _order(saliency: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Pixel indices, most salient first; ties in a random order seeded by ``seed``."""
    values = -np.asarray(saliency, dtype=np.float32).reshape(-1)
    shuffle = torch.randperm(values.size, generator=torch.Generator().manual_seed(seed)).numpy()
    return torch.from_numpy(shuffle[np.argsort(values[shuffle], kind="stable")].copy())


def curve_inputs(x: torch.Tensor, baseline: torch.Tensor, saliency: np.ndarray,
                 steps: int = DEFAULT_STEPS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The images inside both curves: (deletion ``[steps - 1, 3, H, W]``,
    insertion ``[steps - 1, 3, H, W]``) for fractions 1/steps ... (steps-1)/steps
    (the ends are the image and the baseline); tied pixels in an order seeded by ``seed``."""
    height, width = x.shape[-2:]
    rank = torch.empty(height * width, dtype=torch.long)
    rank[_order(saliency, seed)] = torch.arange(height * width)
    rank = rank.view(1, 1, height, width)
    counts = torch.tensor([round(k * height * width / steps) for k in range(1, steps)]).view(-1, 1, 1, 1)
    chosen = rank < counts  # [steps-1, 1, H, W]
    image, base = x[0:1], baseline[0:1]
    deletion = torch.where(chosen, base, image)
    insertion = torch.where(chosen, image, base)
    return deletion, insertion


@torch.no_grad()
def probabilities(model: torch.nn.Module, images: torch.Tensor, target: int, batch_size: int,
                  dtype: torch.dtype | None = None) -> np.ndarray:
    out = []
    for start in range(0, images.shape[0], batch_size):
        with torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(images[start:start + batch_size])
        out.append(logits.float().softmax(dim=-1)[:, target])
    return torch.cat(out).numpy()


def deletion_insertion(model: torch.nn.Module, x: torch.Tensor, saliency: np.ndarray, target: int,
                       steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH, baseline: torch.Tensor | None = None,
                       ends: tuple[float, float] | None = None, dtype: torch.dtype | None = None,
                       seed: int | None = None) -> Curves:
    """Deletion and insertion curves of one image ``x`` ``[1, 3, H, W]`` for
    class ``target``, pixels ordered by ``saliency`` ``[H, W]``. ``ends``:
    the probabilities on the image and the baseline if already known
    (otherwise two more images go through the model). ``seed`` orders tied
    pixels (default: :func:`image_seed`)."""
    x = as_batch(x)
    seed = image_seed(x) if seed is None else seed
    baseline = blurred_baseline(x) if baseline is None else baseline
    deletion, insertion = curve_inputs(x, baseline, saliency, steps, seed)
    batch = [deletion, insertion] if ends is not None else [x, baseline, deletion, insertion]
    values = probabilities(model, torch.cat(batch), target, batch_size, dtype)
    if ends is None:
        ends, values = (float(values[0]), float(values[1])), values[2:]
    inner = steps - 1
    on_image, on_baseline = ends
    fractions = np.linspace(0, 1, steps + 1)
    return Curves(fractions,
                  np.concatenate([[on_image], values[:inner], [on_baseline]]),
                  np.concatenate([[on_baseline], values[inner:], [on_image]]))


def random_curves(model: torch.nn.Module, x: torch.Tensor, target: int, steps: int = DEFAULT_STEPS,
                  batch_size: int = DEFAULT_BATCH, seed: int | None = None, dtype: torch.dtype | None = None) -> Curves:
    """The curves of the seeded :func:`random_map` alone (``2 * steps``
    images): what :func:`evaluate` compares with, reusable for every method
    on the same image, class and ``steps`` (pass it as ``random``)."""
    x = as_batch(x)
    seed = image_seed(x) if seed is None else seed
    return deletion_insertion(model, x, random_map(tuple(x.shape[-2:]), seed), target, steps, batch_size,
                              dtype=dtype, seed=seed)


def evaluate(model: torch.nn.Module, x: torch.Tensor, saliency: np.ndarray, target: int,
             steps: int = DEFAULT_STEPS, batch_size: int = DEFAULT_BATCH, seed: int | None = None,
             dtype: torch.dtype | None = None, random: Curves | None = None) -> Faithfulness:
    """Curves for ``saliency`` and for a seeded :func:`random_map`, in one
    batched pass (``4 * steps - 2`` images, ``batch_size`` per forward).
    ``seed`` (default: :func:`image_seed` of ``x``) seeds the random map and
    the order of tied pixels. ``random``: the random map's curves if already
    known (:func:`random_curves`, same image, class, steps and seed); then
    only the map's own ``2 * steps - 2`` images go through the model."""
    x = as_batch(x)
    seed = image_seed(x) if seed is None else seed
    baseline = blurred_baseline(x)
    if random is not None:
        ends = (float(random.deletion[0]), float(random.deletion[-1]))
        own = deletion_insertion(model, x, saliency, target, steps, batch_size, baseline, ends, dtype, seed)
        return Faithfulness(own, random, ends[0])
    noise = random_map(tuple(x.shape[-2:]), seed)
    parts = [x, baseline, *curve_inputs(x, baseline, saliency, steps, seed),
             *curve_inputs(x, baseline, noise, steps, seed)]
    values = probabilities(model, torch.cat(parts), target, batch_size, dtype)
    ends, inner = (float(values[0]), float(values[1])), steps - 1
    fractions = np.linspace(0, 1, steps + 1)

    def curves(offset):
        chunk = values[offset:offset + 2 * inner]
        return Curves(fractions, np.concatenate([[ends[0]], chunk[:inner], [ends[1]]]),
                      np.concatenate([[ends[1]], chunk[inner:], [ends[0]]]))

    return Faithfulness(curves(2), curves(2 + 2 * inner), ends[0])
