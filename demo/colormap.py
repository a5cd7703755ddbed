"""Colour-mapped overlays as arrays: a value map through a colormap's lookup
table, blended onto an image, with no figure drawn.

matplotlib draws a heatmap by normalising the values, indexing the
colormap's table and compositing; doing the same with NumPy costs a few
milliseconds where a figure costs hundreds, so views that change on every
click (demo/panels.py) paint their heatmaps this way into a figure drawn
once (demo/frames.py). "inferno" is explain/pictures.py's table (the one
the Explain tab's overlays use, so an attention map and a saliency map of the
same value have the same colour); :data:`INFERNO` is that table as a
matplotlib colormap, for the figures' colour bars and imshow. Other names
read matplotlib's own table.
"""
from __future__ import annotations

from functools import lru_cache

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap

from explain import pictures

LUT_SIZE = 256  # matplotlib's colormaps have 256 entries, as explain.pictures.LUT

# explain/pictures.py's inferno as a matplotlib colormap (colour bars, imshow).
INFERNO = ListedColormap(pictures.LUT.astype(np.float64) / 255, name="inferno (explain.pictures)")


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """uint8 ``[256, 3]``: the RGB colours of the colormap ``name``
    ("inferno": explain.pictures.LUT; others: matplotlib's)."""
    if name == "inferno":
        table = np.array(pictures.LUT, dtype=np.uint8, copy=True)
    else:
        table = matplotlib.colormaps[name].resampled(LUT_SIZE)(np.linspace(0.0, 1.0, LUT_SIZE))[:, :3]
        table = np.round(table * 255).astype(np.uint8)
    table.flags.writeable = False
    return table


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    """uint8 ``[..., 3]``: ``values`` mapped linearly from ``[vmin, vmax]``
    onto the colormap (clipped at both ends), as ``imshow(values, cmap,
    vmin=vmin, vmax=vmax)`` colours them."""
    values = np.asarray(values, dtype=np.float64)
    span = vmax - vmin if vmax > vmin else 1.0
    index = np.clip((values - vmin) / span * LUT_SIZE, 0, LUT_SIZE - 1).astype(np.intp)
    return colormap_lut(cmap)[index]


def blend(base: np.ndarray, over: np.ndarray, alpha: float, where: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[H, W, 3]``: ``over`` laid on ``base`` with opacity ``alpha``,
    only where ``where`` (``[H, W]`` bool) is True when given."""
    mixed = np.asarray(base, dtype=np.float32) * (1 - alpha) + np.asarray(over, dtype=np.float32) * alpha
    mixed = np.round(mixed).astype(np.uint8)
    if where is None:
        return mixed
    return np.where(np.asarray(where, dtype=bool)[..., None], mixed, base).astype(np.uint8)


def heatmap_overlay(image: np.ndarray, values: np.ndarray, vmax: float, cmap: str = "inferno",
                    alpha: float = 0.65, where: np.ndarray | None = None) -> np.ndarray:
    """uint8 ``[H, W, 3]``: ``values`` ``[H, W]`` (from 0 to ``vmax``) as a
    heatmap over ``image``, only inside ``where`` when given: the picture of
    ``imshow(image); imshow(values, cmap, vmin=0, vmax=vmax, alpha=alpha)``."""
    return blend(image, colorize(values, 0.0, vmax if vmax > 0 else 1.0, cmap), alpha, where)
