"""Preprocessing from a model's spec (or its checkpoint's ``pretrained_cfg``),
as timm evaluates: resize to ``size / crop_pct``, centre-crop ``size``,
scale to [0, 1], normalise."""
from __future__ import annotations

import math

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
