"""Preprocessing from a model's spec (or its checkpoint's ``pretrained_cfg``),
as timm evaluates: resize to ``size / crop_pct``, centre-crop ``size``,
scale to [0, 1], normalise."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms import v2 as T

from .registry import ModelSpec

_INTERPOLATION = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR,
                  "nearest": T.InterpolationMode.NEAREST, "lanczos": T.InterpolationMode.LANCZOS}


def create_transform(spec: ModelSpec) -> T.Compose:
    """PIL RGB image -> float tensor ``[3, H, W]`` as the model expects."""
    _, height, width = spec.input_size
    interpolation = _INTERPOLATION.get(spec.interpolation, T.InterpolationMode.BICUBIC)
    if spec.crop_mode == "squash":
        # Both sides scaled independently: the whole image, aspect ratio not kept.
        resize = T.Resize((math.floor(height / spec.crop_pct), math.floor(width / spec.crop_pct)),
                          interpolation=interpolation, antialias=True)
    else:
        # The shorter side scaled, aspect ratio kept; then the centre is cut.
        size = math.floor(height / spec.crop_pct) if height == width else (
            math.floor(height / spec.crop_pct), math.floor(width / spec.crop_pct))
        resize = T.Resize(size, interpolation=interpolation, antialias=True)
    return T.Compose([
        T.PILToTensor(),  # uint8 [3, H, W]; resizing uint8 is cheaper than float
        resize,
        T.CenterCrop((height, width)),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(spec.mean, spec.std),
    ])


def coverage(spec: ModelSpec, width: int, height: int) -> tuple[float, float]:
    """What :func:`create_transform` does to a ``width`` x ``height`` image:
    (how many times its pixels are enlarged, the largest scale of the two
    sides; the share of its area inside the centre crop)."""
    _, input_height, input_width = spec.input_size
    if spec.crop_mode == "squash" or input_height != input_width:
        resized = (math.floor(input_width / spec.crop_pct), math.floor(input_height / spec.crop_pct))
    else:
        shorter = math.floor(input_height / spec.crop_pct)
        scale = shorter / min(width, height)
        resized = (shorter, round(height * scale)) if width <= height else (round(width * scale), shorter)
    enlargement = max(resized[0] / width, resized[1] / height)
    share = min(1.0, input_width / resized[0]) * min(1.0, input_height / resized[1])
    return enlargement, share


def model_input_image(x: torch.Tensor | np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The normalised model input ``[3, H, W]`` (or ``[1, 3, H, W]``) back to
    RGB ``[H, W, 3]`` uint8: the exact pixels the model saw."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"Expected a [3, H, W] tensor, got shape {tuple(x.shape)}.")
    rgb = x.astype(np.float64) * np.asarray(std, float)[:, None, None] + np.asarray(mean, float)[:, None, None]
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
