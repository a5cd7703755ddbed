"""Pictures of saliency maps, as pure functions of numpy arrays (no
matplotlib, no Gradio): the app and the CLI draw with the same code.

The colour map is a 256-entry lookup table interpolated from nine stops of
matplotlib's "inferno" (perceptually uniform, dark for 0, light for 1), so a
map is coloured with one indexing operation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

# inferno at 0, 1/8, ..., 1 (RGB, 0-255)
INFERNO_STOPS = np.array([
    (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
    (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164)], dtype=np.float64)


def colormap_lut(stops: np.ndarray = INFERNO_STOPS, size: int = 256) -> np.ndarray:
    """``[size, 3]`` uint8: the stops linearly interpolated."""
    positions = np.linspace(0, 1, len(stops))
    samples = np.linspace(0, 1, size)
    lut = np.stack([np.interp(samples, positions, stops[:, c]) for c in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


LUT = colormap_lut()


def colorize(saliency: np.ndarray, lut: np.ndarray = LUT) -> np.ndarray:
    """``[H, W]`` values in [0, 1] -> ``[H, W, 3]`` uint8 colours."""
    values = np.clip(np.nan_to_num(np.asarray(saliency, dtype=np.float32)), 0, 1)
    return lut[np.round(values * (len(lut) - 1)).astype(np.intp)]


def overlay(image: np.ndarray, saliency: np.ndarray, opacity: float = 0.5, lut: np.ndarray = LUT) -> np.ndarray:
    """The colour-mapped ``saliency`` over ``image`` (``[H, W, 3]`` uint8 of the
    same size): ``(1 - opacity) * image + opacity * colour``."""
    image = np.asarray(image)
    if image.shape[:2] != np.shape(saliency):
        raise ValueError(f"The image is {image.shape[1]} x {image.shape[0]} pixels but the map is "
                         f"{np.shape(saliency)[1]} x {np.shape(saliency)[0]}; draw the map over the model input.")
    opacity = float(np.clip(opacity, 0, 1))
    blended = (1 - opacity) * image[..., :3].astype(np.float32) + opacity * colorize(saliency, lut)
    return np.round(blended).astype(np.uint8)


def model_input_image(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised input ``[3, H, W]`` (or ``[1, 3, H, W]``) back to the
    ``[H, W, 3]`` uint8 picture the model saw."""
    x = x.detach().float().reshape(-1, *x.shape[-3:])[0].cpu()
    pixels = x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
