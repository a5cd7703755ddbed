"""Input-gradient methods through Captum: Integrated Gradients (Sundararajan
et al., 2017) and SmoothGrad (Smilkov et al., 2017), and the one
gradient-free method here, occlusion (Zeiler & Fergus, 2014), batched.

Captum returns a relevance per input pixel and colour channel; the map is
the sum of their absolute values over the three channels.
"""
from __future__ import annotations

import math

import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from captum.attr import Saliency

from .base import Attribution


class IntegratedGradients(Attribution):
    """``IntegratedGradients(model).attribute(x, target) -> [B, H, W]``.

    Baseline: the all-zero input, which after the model's normalisation is the
    training set's mean colour (grey for the Inception-normalised models).
    ``n_steps`` points of the Gauss-Legendre path, ``internal_batch_size``
    of them per forward.
    """

    name = "integrated_gradients"

    def __init__(self, model, n_steps: int = 32, internal_batch_size: int = 16):
        super().__init__(model)
        self.n_steps, self.internal_batch_size = n_steps, internal_batch_size
        self.captum = CaptumIntegratedGradients(model)

    def relevance(self, x, targets):
        attributions = self.captum.attribute(x, baselines=torch.zeros_like(x), target=targets,
                                             n_steps=self.n_steps, internal_batch_size=self.internal_batch_size)
        return attributions.abs().sum(dim=1)


class SmoothGrad(Attribution):
    """``SmoothGrad(model).attribute(x, target) -> [B, H, W]``: the mean of the
    absolute input gradient over ``samples`` copies of the input with Gaussian
    noise of ``noise`` x (input max - input min) standard deviation (the
    paper's 10-20 %), ``batch_size`` copies per forward.

    The noise comes from a generator of its own seeded with ``seed``: the same
    image gives the same map (the app shows it beside its scores), and
    neither torch's global random state (a training running at the same time)
    nor another SmoothGrad running at the same time is touched."""

    name = "smoothgrad"

    def __init__(self, model, samples: int = 16, noise: float = 0.15, batch_size: int = 8, seed: int = 0):
        super().__init__(model)
        self.samples, self.noise, self.batch_size, self.seed = samples, noise, batch_size, seed
        self.captum = Saliency(model)

    def relevance(self, x, targets):
        stdev = float(self.noise * (x.max() - x.min()))
        generator = torch.Generator().manual_seed(self.seed)
        batch = x.shape[0]
        targets = torch.as_tensor(targets).reshape(-1).expand(batch)
        total = torch.zeros_like(x)
        for start in range(0, self.samples, self.batch_size):
            copies = min(self.batch_size, self.samples - start)
            noise = torch.randn((copies, *x.shape), generator=generator, dtype=torch.float32) * stdev
            noisy = (x.unsqueeze(0) + noise.to(device=x.device, dtype=x.dtype)).reshape(copies * batch, *x.shape[1:])
            gradients = self.captum.attribute(noisy, target=targets.repeat(copies), abs=True)
            total += gradients.reshape(copies, *x.shape).sum(dim=0)
        return (total / self.samples).sum(dim=1)


class Occlusion(Attribution):
    """``Occlusion(model).attribute(x, target) -> [B, H, W]``: slide a square
    of the mean colour (0 after normalisation) over the image; a pixel's
    relevance is the mean drop of the target logit over the squares that
    cover it (rises count as 0). Squares of ``window`` pixels (default: a
    seventh of the shorter side) every ``stride`` pixels (default: the
    window), ``batch_size`` occluded images per forward."""

    name = "occlusion"

    def __init__(self, model, window: int | None = None, stride: int | None = None, batch_size: int = 16):
        super().__init__(model)
        self.window, self.stride, self.batch_size = window, stride, batch_size

    def positions(self, height: int, width: int) -> list[tuple[int, int, int]]:
        window = self.window or math.ceil(min(height, width) / 7)
        stride = self.stride or window

        def starts(side):
            last = max(side - window, 0)
            values = list(range(0, last + 1, stride))
            return values if values[-1] == last else values + [last]  # the last square reaches the edge

        return [(top, left, window) for top in starts(height) for left in starts(width)]

    @torch.no_grad()
    def relevance(self, x, targets):
        batch, _, height, width = x.shape
        positions = self.positions(height, width)
        drop = x.new_zeros(batch, height, width)
        cover = x.new_zeros(height, width)
        for top, left, window in positions:
            cover[top:top + window, left:left + window] += 1
        for b in range(batch):
            target = int(targets[b])
            base = self.model(x[b:b + 1])[0, target]
            for start in range(0, len(positions), self.batch_size):
                chunk = positions[start:start + self.batch_size]
                occluded = x[b:b + 1].repeat(len(chunk), 1, 1, 1)
                for i, (top, left, window) in enumerate(chunk):
                    occluded[i, :, top:top + window, left:left + window] = 0
                scores = (base - self.model(occluded)[:, target]).clamp_min(0)
                for score, (top, left, window) in zip(scores.tolist(), chunk):
                    drop[b, top:top + window, left:left + window] += score
        return drop / cover.clamp_min(1)
