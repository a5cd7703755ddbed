"""The Swin views: pure functions from arrays (a model-input image, a window
geometry, a captured :class:`models.AttentionRecord`) to arrays and matplotlib
figures. No UI here; figures are :class:`matplotlib.figure.Figure` objects on
an Agg canvas, never pyplot, so a server may build them from many threads.

Coordinates
-----------
- The image every view draws on is the *model input*: the preprocessed tensor
  denormalised back to RGB (:func:`model_input_image`), ``[H, W, 3]`` uint8.
  A click is ``query_xy = (x, y)``: column and row of a pixel of that image, as
  Gradio's ``SelectData.index`` gives them.
- Token ``(r, c)`` of a stage with token size ``t`` (``record.token_size`` =
  patch size * 2 ** stage) covers pixel rows ``[r*t, (r+1)*t)`` and columns
  ``[c*t, (c+1)*t)``, clipped to the image; the map has ``ceil(H / t) x
  ceil(W / t)`` tokens.
- Windows are numbered row-major over the padded, cyclically shifted map and
  tokens row-major inside their window (models/attention.py). Shifted position
  ``(y, x)`` holds the token at original position ``((y + sh) % Hp, (x + sw) % Wp)``;
  original positions at or beyond ``feature_size`` are padding: no pixel shows them.

Attention maps at image resolution keep one value per token: every pixel of a
token carries that token's value (not divided by its area), so a colour bar
reads as an attention weight and ``image_map[r*t, c*t] == token_map[r, c]``.
Sums are exact on the token-level maps (``*_tokens``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from demo.colormap import INFERNO
from models.swin import WindowGeometry, shifted_window_mask, shifted_window_regions, window_positions
from models.transforms import model_input_image  # noqa: F401 - the views' image; defined beside its transform

# Overlay colours (RGB, 0-255). Regular windows alternate two light blues; a
# window that the cyclic shift splits across the image edges gets a strong
# colour of its own, the same on all of its pieces.
REGULAR_TINTS = np.array([[31, 119, 180], [158, 218, 229]], dtype=float)
WRAPPED_TINTS = np.array([[255, 127, 14], [214, 39, 40], [44, 160, 44], [148, 103, 189],
                          [227, 119, 194], [188, 189, 34], [140, 86, 75], [23, 190, 207]], dtype=float)
REGULAR_ALPHA, WRAPPED_ALPHA = 0.3, 0.5
PADDING_STRIPES = np.array([[70, 70, 70], [120, 120, 120]], dtype=float)
LINE_COLOUR = np.array([255, 255, 255], dtype=float)
OVERLAY_MIN_SIDE = 448  # automatic upscaling of small overlays, in pixels of the longer side
# The nine regions of the shifted-window mask, one categorical colour each.
REGION_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                  "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
ALLOWED_COLOUR, BLOCKED_COLOUR = "#f2e394", "#2b2b2b"


# --------------------------------------------------------------------------
# Image and geometry
# --------------------------------------------------------------------------

def stage_geometries(model, input_hw: Sequence[int]) -> list[list[WindowGeometry]]:
    """``[stage][block]``: the :class:`WindowGeometry` each block uses for an
    input of ``input_hw`` pixels, without running the model."""
    sizes = model.feature_sizes(input_hw)
    geometries: list[list[WindowGeometry]] = [[] for _ in sizes]
    for stage, _, block in model.stage_blocks():
        geometries[stage].append(block.geometry(sizes[stage]))
    return geometries


def token_size_of(model, stage: int) -> int:
    """Input pixels per token side at ``stage``."""
    return model.patch_size * 2 ** stage


def geometry_of(record) -> WindowGeometry:
    """The :class:`WindowGeometry` of an :class:`~models.AttentionRecord` (or
    of anything with the same four fields)."""
    if isinstance(record, WindowGeometry):
        return record
    return WindowGeometry(feature_size=tuple(record.feature_size), padded_size=tuple(record.padded_size),
                          window_size=tuple(record.window_size), shift_size=tuple(record.shift_size))


def find_record(records, stage: int, block: int):
    """The first record of ``(stage, block)`` in a capture."""
    for record in records:
        if record.stage == stage and record.block == block:
            return record
    raise ValueError(f"No attention was captured for stage {stage}, block {block}; pick a block the model has.")


def window_layout(geometry) -> tuple[np.ndarray, np.ndarray]:
    """Where every position of the padded map goes, in *original* coordinates.

    Returns ``(window, index)``, both ``[Hp, Wp]`` int: ``window[r, c]`` is the
    window (row-major over the shifted map) holding the token at original
    position ``(r, c)`` and ``index[r, c]`` its row in that window's ``N x N``
    attention matrix. Rows / columns ``>= feature_size`` are padding.
    """
    rows, cols = _all_window_positions(geometry)  # [nW, N]
    window = np.empty(geometry.padded_size, dtype=np.int64)
    index = np.empty(geometry.padded_size, dtype=np.int64)
    window[rows, cols] = np.arange(rows.shape[0])[:, None]
    index[rows, cols] = np.arange(rows.shape[1])[None, :]
    return window, index


def window_token_positions(geometry, window_index: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)``, each ``[N]``: original padded-map position of token
    ``j`` of window ``window_index``, in the window's token order. Positions
    ``>= feature_size`` are padding."""
    count = geometry.grid[0] * geometry.grid[1]
    if not 0 <= window_index < count:
        raise ValueError(f"Window {window_index} does not exist; this block has {count} windows.")
    rows, cols = _all_window_positions(geometry)
    return rows[int(window_index)], cols[int(window_index)]


def _all_window_positions(geometry) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)``, each ``[nW, N]``: :func:`window_token_positions` of
    every window (:func:`models.swin.window_positions`, as NumPy arrays)."""
    rows, cols = window_positions(geometry_of(geometry))
    return rows.numpy(), cols.numpy()


def _is_real(geometry, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return (rows < geometry.feature_size[0]) & (cols < geometry.feature_size[1])


def _image_hw(feature_size: Sequence[int], token_size: int, image_hw: Sequence[int] | None) -> tuple[int, int]:
    """``image_hw``, checked against the map; ``None`` means the map's full
    extent (``feature_size * token_size``)."""
    fh, fw = feature_size
    if image_hw is None:
        return fh * token_size, fw * token_size
    h, w = int(image_hw[0]), int(image_hw[1])
    if (math.ceil(h / token_size), math.ceil(w / token_size)) != (fh, fw):
        raise ValueError(f"An image of {h} x {w} pixels does not match a {fh} x {fw} map of {token_size}-pixel "
                         "tokens; draw on the model input (model_input_image) at the size the model saw.")
    return h, w


def token_under(query_xy: Sequence[float], token_size: int, feature_size: Sequence[int],
                image_hw: Sequence[int] | None = None) -> tuple[int, int]:
    """``(row, col)`` of the token covering pixel ``query_xy = (x, y)``."""
    x, y = int(math.floor(query_xy[0])), int(math.floor(query_xy[1]))
    h, w = image_hw if image_hw is not None else (feature_size[0] * token_size, feature_size[1] * token_size)
    if not (0 <= x < w and 0 <= y < h):
        raise ValueError(f"The point ({x}, {y}) is outside the {w} x {h} image; click inside the image.")
    return y // token_size, x // token_size


def tokens_to_image(token_map: np.ndarray, token_size: int, image_hw: Sequence[int] | None = None) -> np.ndarray:
    """``[Hf, Wf]`` per-token values -> ``[H, W]`` per-pixel: each pixel gets
    the value of the token covering it (``out[y, x] = token_map[y // t, x // t]``)."""
    token_map = np.asarray(token_map)
    h, w = _image_hw(token_map.shape[:2], token_size, image_hw)
    return np.repeat(np.repeat(token_map, token_size, axis=0), token_size, axis=1)[:h, :w]


def window_pixel_mask(geometry, window_index: int, token_size: int,
                      image_hw: Sequence[int] | None = None) -> np.ndarray:
    """``[H, W]`` bool: the image pixels covered by the real tokens of a window
    (for a shifted block its pieces may sit at opposite image edges)."""
    rows, cols = window_token_positions(geometry, window_index)
    real = _is_real(geometry, rows, cols)
    tokens = np.zeros(geometry.feature_size, dtype=bool)
    tokens[rows[real], cols[real]] = True
    return tokens_to_image(tokens, token_size, _image_hw(geometry.feature_size, token_size, image_hw))


def _wrapped_ranges(start: int, length: int, shift: int, total: int) -> list[tuple[int, int]]:
    """The original positions ``[a, b)`` of shifted positions ``[start, start + length)``:
    one range, or two when the window wraps round the map's edge."""
    a = (start + shift) % total
    if a + length <= total:
        return [(a, a + length)]
    return [(a, total), (0, a + length - total)]


def window_pieces(geometry, window_index: int) -> list[tuple[int, int, int, int]]:
    """The rectangles ``(r0, r1, c0, c1)`` (token rows ``[r0, r1)``, columns
    ``[c0, c1)`` of the padded map, original coordinates) a window falls into:
    one, or up to four for a shifted window that wraps round the edges."""
    (hp, wp), (mh, mw), (sh, sw) = geometry.padded_size, geometry.window_size, geometry.shift_size
    wy, wx = divmod(int(window_index), wp // mw)
    return [(r0, r1, c0, c1) for r0, r1 in _wrapped_ranges(wy * mh, mh, sh, hp)
            for c0, c1 in _wrapped_ranges(wx * mw, mw, sw, wp)]


# --------------------------------------------------------------------------
# Window grid
# --------------------------------------------------------------------------

def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB image [H, W, 3], got shape {image.shape}.")
    return image


def _window_tints(geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window: tint ``[nW, 3]``, alpha ``[nW]`` and whether it wraps ``[nW]``."""
    gh, gw = geometry.grid
    sh, sw = geometry.shift_size
    wy, wx = np.divmod(np.arange(gh * gw), gw)
    wrapped = ((sh > 0) & (wy == gh - 1)) | ((sw > 0) & (wx == gw - 1))
    tints = REGULAR_TINTS[(wy + wx) % 2].copy()
    # Wrapped windows form an L: down the last column, then leftwards along
    # the last row. Colours follow that path, so neighbours never share one.
    path = np.where(wx == gw - 1, wy, (gh - 1) + (gw - 1 - wx)) if sw > 0 else gw - 1 - wx
    tints[wrapped] = WRAPPED_TINTS[path[wrapped] % len(WRAPPED_TINTS)]
    return tints, np.where(wrapped, WRAPPED_ALPHA, REGULAR_ALPHA), wrapped


def enlarge(array: np.ndarray, factor: int) -> np.ndarray:
    """Each element of the first two axes repeated ``factor`` x ``factor`` times."""
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def window_grid_overlay(image: np.ndarray, geometry, token_size: int, scale: int | None = None) -> np.ndarray:
    """The window grid of one block drawn on the model-input image.

    Returns uint8 ``[Hp*t*scale, Wp*t*scale, 3]``: the canvas covers the whole
    padded map, the image at its top-left, pixels beyond the image (padding
    tokens, and the part of edge tokens past the image) striped grey. Each
    window's tokens are tinted; a window that the cyclic shift splits over the
    image edges gets a strong colour shared by all of its pieces, regular
    windows alternate light blues. A white line marks, inside each window, its
    first pixel row / column where it meets another window; for a shifted
    block the lines sit at tokens ``shift + k * window`` (mod Hp, Wp).
    ``scale`` (integer, nearest-neighbour) defaults to the smallest that makes
    the longer side at least 448 pixels; 1 keeps one canvas pixel per input pixel.
    """
    image = _check_image(image)
    h, w = _image_hw(geometry.feature_size, token_size, image.shape[:2])
    (hp, wp), t = geometry.padded_size, token_size
    if scale is None:
        scale = max(1, math.ceil(OVERLAY_MIN_SIDE / max(hp * t, wp * t)))
    pixel = t * scale  # canvas pixels per token side
    yy, xx = np.mgrid[0:hp * pixel, 0:wp * pixel]
    canvas = PADDING_STRIPES[((yy + xx) // max(2, pixel // 3)) % 2]  # diagonal stripes, [Hc, Wc, 3]
    canvas[:h * scale, :w * scale] = enlarge(image[..., :3], scale)

    window, _ = window_layout(geometry)  # [Hp, Wp]
    tints, alphas, _ = _window_tints(geometry)
    alpha = enlarge(alphas[window], pixel)[..., None]
    out = (1 - alpha) * canvas + alpha * enlarge(tints[window], pixel)

    ids = enlarge(window, pixel)
    starts_col = np.zeros(ids.shape, dtype=bool)  # first column of a window, where it meets another
    starts_col[:, 1:] = ids[:, 1:] != ids[:, :-1]
    starts_row = np.zeros(ids.shape, dtype=bool)
    starts_row[1:, :] = ids[1:, :] != ids[:-1, :]
    line = starts_col | starts_row
    for d in range(1, max(1, scale // 4)):  # thicker lines when upscaled, growing into the window
        line[:, d:] |= starts_col[:, :-d]
        line[d:, :] |= starts_row[:-d, :]
    out[line] = LINE_COLOUR
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _new_figure(figsize) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _outlined(colour: str = "black", width: float = 2.5) -> list:
    return [patheffects.withStroke(linewidth=width, foreground=colour)]


def _block_kind(block: int, geometry) -> str:
    if any(geometry.shift_size):
        return "shifted windows"
    if block % 2:
        return "no shift (the map fits in one window)"
    return "regular windows"


def window_grid_figure(image: np.ndarray, geometries_of_stage: Sequence, token_size: int, stage: int) -> Figure:
    """The regular (block 0) and shifted (block 1) window grids of a stage side
    by side over the image (:func:`window_grid_overlay`), each window numbered
    on every piece (when there are at most 64 windows), axes in input pixels."""
    panels = list(enumerate(geometries_of_stage))[:2]
    if not panels:
        raise ValueError(f"Stage {stage} has no blocks.")
    image = _check_image(image)
    fig = _new_figure((5.2 * len(panels), 5.8))
    handles: dict[str, Patch] = {}
    for column, (block, geometry) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), column + 1)
        (hp, wp), (mh, mw), (sh, sw) = geometry.padded_size, geometry.window_size, geometry.shift_size
        ax.imshow(window_grid_overlay(image, geometry, token_size), extent=(0, wp * token_size, hp * token_size, 0),
                  interpolation="nearest")
        gh, gw = geometry.grid
        if gh * gw <= 64:
            fontsize = max(5.0, min(12.0, 64.0 / max(gh, gw)))
            for index in range(gh * gw):
                for r0, r1, c0, c1 in window_pieces(geometry, index):
                    ax.text((c0 + c1) / 2 * token_size, (r0 + r1) / 2 * token_size, str(index), ha="center",
                            va="center", fontsize=fontsize, color="white", path_effects=_outlined())
        ax.set_title(f"stage {stage}, block {block}: {_block_kind(block, geometry)}\n"
                     f"window {mh} x {mw} tokens, shift ({sh}, {sw})", fontsize=10)
        ax.set_xlabel("x (input pixels)")
        ax.set_ylabel("y (input pixels)")
        _, _, wrapped = _window_tints(geometry)
        if wrapped.any():
            handles["wrapped"] = Patch(color=WRAPPED_TINTS[0] / 255,
                                       label="shifted window split over the edges (same number on each piece)")
        if (hp * token_size, wp * token_size) != image.shape[:2]:
            handles["padding"] = Patch(facecolor=PADDING_STRIPES[1] / 255, edgecolor=PADDING_STRIPES[0] / 255,
                                       hatch="///", label="padding (beyond the image)")
    if handles:
        fig.legend(handles=list(handles.values()), loc="outside lower center", ncol=len(handles), fontsize=8,
                   frameon=False)
    return fig


# --------------------------------------------------------------------------
# Shifted-window mask
# --------------------------------------------------------------------------

def _row_runs(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """``(row, start, stop)`` for every run of True in each row of ``mask``."""
    runs = []
    for y in np.flatnonzero(mask.any(axis=1)):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask[y].astype(np.int8), [0]])))
        runs += [(int(y), int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
    return runs


def region_map_figure(geometry, window_index: int, title: str | None = None) -> Figure:
    """Left: the region map ``[Hp, Wp]`` of the padded, shifted map (regions
    0..8, one colour each, numbers in the cells up to 16 x 16, padding tokens
    greyed) with window ``window_index`` outlined. Right: that window's
    ``N x N`` mask (query token i, key token j; allowed when both lie in one
    region). ``title`` (e.g. stage, block, shift) heads the figure."""
    (hp, wp), (mh, mw), (sh, sw) = geometry.padded_size, geometry.window_size, geometry.shift_size
    rows, cols = window_token_positions(geometry, window_index)  # validates the index
    regions = shifted_window_regions(geometry.padded_size, geometry.window_size, geometry.shift_size).numpy()
    allowed = shifted_window_mask(geometry.padded_size, geometry.window_size,
                                  geometry.shift_size)[window_index].numpy()
    n = mh * mw
    fig = _new_figure((11.5, 5.8))
    ax_regions, ax_mask = fig.subplots(1, 2)

    ax_regions.imshow(regions, cmap=ListedColormap(REGION_COLOURS), vmin=-0.5, vmax=8.5, interpolation="nearest")
    fh, fw = geometry.feature_size
    padding = np.zeros((hp, wp), dtype=bool)
    padding[fh:, :] = True
    padding[:, fw:] = True
    padding = np.roll(padding, (-sh, -sw), axis=(0, 1))  # shifted position (y, x) holds original (y+sh, x+sw)
    for y, x0, x1 in _row_runs(padding):  # padding tokens hatched, one rectangle per run of a row
        ax_regions.add_patch(Rectangle((x0 - 0.5, y - 0.5), x1 - x0, 1, facecolor=(0, 0, 0, 0.35),
                                       edgecolor=(1, 1, 1, 0.8), hatch="///", linewidth=0))
    if max(hp, wp) <= 16:
        fontsize = max(5.0, min(10.0, 150.0 / max(hp, wp)))
        for y in range(hp):
            for x in range(wp):
                ax_regions.text(x, y, str(regions[y, x]), ha="center", va="center", fontsize=fontsize,
                                color="white", path_effects=_outlined(width=1.5))
    wy, wx = divmod(int(window_index), wp // mw)
    ax_regions.add_patch(Rectangle((wx * mw - 0.5, wy * mh - 0.5), mw, mh, fill=False, edgecolor="white",
                                   linewidth=2.5, path_effects=_outlined(width=5.0)))
    present = np.unique(regions)
    handles = [Patch(color=REGION_COLOURS[k], label=f"region {k}") for k in present]
    if padding.any():
        handles.append(Patch(facecolor="#777777", edgecolor="white", hatch="///", label="padding token"))
    handles.append(Patch(facecolor="none", edgecolor="black", linewidth=2, label=f"window {window_index}"))
    ax_regions.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(5, len(handles)),
                      fontsize=8, frameon=False)
    ax_regions.set_title(f"regions of the shifted, padded map ({hp} x {wp} tokens)", fontsize=10)
    for axis in (ax_regions.xaxis, ax_regions.yaxis, ax_mask.xaxis, ax_mask.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    ax_regions.set_xlabel("column in the shifted map")
    ax_regions.set_ylabel("row in the shifted map")

    ax_mask.imshow(allowed.astype(np.uint8), cmap=ListedColormap([BLOCKED_COLOUR, ALLOWED_COLOUR]), vmin=0, vmax=1,
                   interpolation="nearest")
    for k in range(1, mh):  # separate the window's token rows
        ax_mask.axhline(k * mw - 0.5, color="grey", linewidth=0.4)
        ax_mask.axvline(k * mw - 0.5, color="grey", linewidth=0.4)
    real = int(_is_real(geometry, rows, cols).sum())
    ax_mask.set_title(f"mask of window {window_index}: {int(allowed.sum())} of {n * n} pairs allowed"
                      f"\n({real} image tokens, {n - real} padding)", fontsize=10)
    ax_mask.set_xlabel("key token j (row-major in the window)")
    ax_mask.set_ylabel("query token i (row-major in the window)")
    ax_mask.legend(handles=[Patch(color=ALLOWED_COLOUR, label="allowed (same region)"),
                            Patch(color=BLOCKED_COLOUR, label="blocked (-100 added before softmax)")],
                   loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title if title is not None else f"window {mh} x {mw}, shift ({sh}, {sw})")
    return fig


# --------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------

def head_label(head: int | None) -> str:
    return "mean of heads" if head is None else f"head {head}"


def attention_title(record, head: int | None) -> str:
    """E.g. ``"stage 0, block 1, head 2, shift (3, 3)"``."""
    sh, sw = record.shift_size
    return f"stage {record.stage}, block {record.block}, {head_label(head)}, shift ({sh}, {sw})"


def _attention(record, batch_index: int, head: int | None, window: int | slice = slice(None)) -> np.ndarray:
    """The attention of one sample, heads selected or averaged, float64:
    ``[nW, N, N]`` (or ``[N, N]`` for one window)."""
    attention = record.attention
    if not 0 <= batch_index < attention.shape[0]:
        raise ValueError(f"Sample {batch_index} is not in a batch of {attention.shape[0]}.")
    if head is not None and not 0 <= head < attention.shape[2]:
        raise ValueError(f"Head {head} does not exist; this block has {attention.shape[2]} heads.")
    part = attention[batch_index, window]  # [nW, heads, N, N] or [heads, N, N]
    if isinstance(part, torch.Tensor):
        part = part.detach().cpu().to(torch.float64).numpy()
    part = np.asarray(part, dtype=np.float64)
    return part.mean(axis=-3) if head is None else part[..., head, :, :]


@dataclass(frozen=True)
class QueryAttention:
    """One query token's attention row, on the shifted layout and placed back."""

    token: tuple[int, int]   # (row, col) of the query token on the feature map
    window: int              # its window, row-major over the shifted padded map
    row: int                 # its row i in that window's N x N attention matrix
    key_rows: np.ndarray     # [N] original padded-map row of key token j
    key_cols: np.ndarray     # [N] original padded-map column of key token j
    weights: np.ndarray      # [N] the attention row (float64), sums to 1
    tokens: np.ndarray       # [Hf, Wf] weights of the real keys at their positions, 0 elsewhere
    padding_weight: float    # weight on padding keys, which no pixel shows: tokens.sum() == 1 - padding_weight


def query_attention(record, query_xy: Sequence[float], head: int | None, batch_index: int = 0) -> QueryAttention:
    """Find the token under pixel ``query_xy = (x, y)`` at the record's stage,
    its window and row in the shifted layout, and take that attention row
    (``head``, or the mean of heads when ``None``); place it on the feature
    map undoing the cyclic shift, dropping padding keys."""
    geometry = geometry_of(record)
    r, c = token_under(query_xy, record.token_size, geometry.feature_size)
    window, index = window_layout(geometry)
    w, i = int(window[r, c]), int(index[r, c])
    weights = _attention(record, batch_index, head, w)[i]  # [N]
    rows, cols = window_token_positions(geometry, w)
    real = _is_real(geometry, rows, cols)
    tokens = np.zeros(geometry.feature_size, dtype=np.float64)
    tokens[rows[real], cols[real]] = weights[real]
    return QueryAttention(token=(r, c), window=w, row=i, key_rows=rows, key_cols=cols, weights=weights,
                          tokens=tokens, padding_weight=float(weights[~real].sum()))


def query_window_tokens(record, query_xy: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)``: the real (non-padding) tokens of the window holding the
    token under ``query_xy``, original feature-map coordinates, in the window's
    key order."""
    geometry = geometry_of(record)
    r, c = token_under(query_xy, record.token_size, geometry.feature_size)
    window, _ = window_layout(geometry)
    rows, cols = window_token_positions(geometry, int(window[r, c]))
    real = _is_real(geometry, rows, cols)
    return rows[real], cols[real]


def query_window_mask(record, query_xy: Sequence[float], image_hw: Sequence[int] | None = None) -> np.ndarray:
    """``[H, W]`` bool: the pixels of the query's window (for
    :func:`attention_overlay_figure`'s ``window_outline``)."""
    geometry = geometry_of(record)
    r, c = token_under(query_xy, record.token_size, geometry.feature_size)
    window, _ = window_layout(geometry)
    return window_pixel_mask(geometry, int(window[r, c]), record.token_size, image_hw)


def query_attention_tokens(record, query_xy: Sequence[float], head: int | None, batch_index: int = 0) -> np.ndarray:
    """``[Hf, Wf]`` float64: the query's attention on each token of its window,
    0 outside it. Sums to ``1 - weight on padding keys``."""
    return query_attention(record, query_xy, head, batch_index).tokens


def query_attention_map(record, query_xy: Sequence[float], head: int | None, batch_index: int = 0,
                        image_hw: Sequence[int] | None = None) -> np.ndarray:
    """``[H, W]`` float64: :func:`query_attention_tokens` at image resolution,
    each pixel carrying the weight of the token covering it (so
    ``map[::t, ::t]`` sums to ``1 - weight on padding keys``). ``image_hw``
    defaults to ``feature_size * token_size``, the input size whenever it is a
    multiple of the token size."""
    tokens = query_attention_tokens(record, query_xy, head, batch_index)
    return tokens_to_image(tokens, record.token_size, _image_hw(record.feature_size, record.token_size, image_hw))


def block_attention_tokens(record, head: int | None, batch_index: int = 0) -> np.ndarray:
    """``[Hf, Wf]`` float64: for each real token, the attention it receives
    inside its window: the column sum of its window's attention matrix over
    the window's *real* query tokens (padding queries are not image content).
    Its total is ``Hf * Wf`` minus the weight real queries give to padding keys."""
    geometry = geometry_of(record)
    attention = _attention(record, batch_index, head)  # [nW, N, N]
    rows, cols = _all_window_positions(geometry)  # [nW, N]
    real = _is_real(geometry, rows, cols)
    received = np.einsum("wij,wi->wj", attention, real.astype(np.float64))  # [nW, N]
    tokens = np.zeros(geometry.feature_size, dtype=np.float64)
    tokens[rows[real], cols[real]] = received[real]
    return tokens


def block_attention_map(record, head: int | None, batch_index: int = 0,
                        image_hw: Sequence[int] | None = None) -> np.ndarray:
    """``[H, W]`` float64: :func:`block_attention_tokens` at image resolution,
    each pixel carrying its token's value (units: attention weight summed over
    queries, 1 on average when nothing goes to padding)."""
    tokens = block_attention_tokens(record, head, batch_index)
    return tokens_to_image(tokens, record.token_size, _image_hw(record.feature_size, record.token_size, image_hw))


def relative_position_bias_figure(bias_map: torch.Tensor | np.ndarray, title: str | None = None) -> Figure:
    """One panel per head of the ``[heads, 2M-1, 2M-1]`` bias (rows dy, columns
    dx, offset = query position - key position, (0, 0) at the centre), one
    shared, zero-centred colour bar."""
    bias = bias_map.detach().cpu().numpy() if isinstance(bias_map, torch.Tensor) else np.asarray(bias_map)
    bias = bias.astype(np.float64)
    if bias.ndim != 3 or bias.shape[1] != bias.shape[2] or bias.shape[1] % 2 == 0:
        raise ValueError(f"Expected a bias map [heads, 2M-1, 2M-1], got shape {bias.shape}.")
    heads, span = bias.shape[0], bias.shape[1]
    reach = (span - 1) // 2  # largest |offset|
    root = math.sqrt(heads)
    columns = next((d for d in range(math.ceil(root), int(2 * root) + 1) if heads % d == 0), math.ceil(root))
    grid_rows = math.ceil(heads / columns)
    fig = _new_figure((2.3 * columns + 1.4, 2.3 * grid_rows + 0.8))
    limit = float(np.abs(bias).max()) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    ticks = sorted({-reach, -(reach // 2), 0, reach // 2, reach})
    axes, image = [], None
    for h in range(heads):
        ax = fig.add_subplot(grid_rows, columns, h + 1)
        image = ax.imshow(bias[h], cmap="RdBu_r", norm=norm, interpolation="nearest",
                          extent=(-reach - 0.5, reach + 0.5, reach + 0.5, -reach - 0.5))
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.tick_params(labelsize=7)
        ax.set_title(f"head {h}", fontsize=9)
        if h % columns == 0:
            ax.set_ylabel("dy")
        if h >= heads - columns:
            ax.set_xlabel("dx")
        axes.append(ax)
    fig.colorbar(image, ax=axes, label="bias added to the attention logit", shrink=0.9)
    fig.suptitle(title if title is not None else "relative position bias by offset (query - key)")
    return fig


def outline_segments(mask: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Line segments ``((x0, y0), (x1, y1))`` along the pixel edges that
    separate ``mask`` from the rest, in image coordinates (pixel (x, y) spans
    [x, x+1) x [y, y+1)); runs along a row / column are merged."""
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    segments = []
    horizontal = padded[:-1, 1:-1] != padded[1:, 1:-1]  # [H+1, W]: edge at y between rows y-1 and y
    vertical = padded[1:-1, :-1] != padded[1:-1, 1:]    # [H, W+1]: edge at x between columns x-1 and x

    def runs(line: np.ndarray):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(np.int8), [0]])))
        return zip(edges[::2], edges[1::2])

    for y in np.flatnonzero(horizontal.any(axis=1)):
        segments += [((int(a), int(y)), (int(b), int(y))) for a, b in runs(horizontal[y])]
    for x in np.flatnonzero(vertical.any(axis=0)):
        segments += [((int(x), int(a)), (int(x), int(b))) for a, b in runs(vertical[:, x])]
    return segments


def attention_overlay_figure(image: np.ndarray, attention_map: np.ndarray, title: str,
                             query_xy: Sequence[float] | None = None, window_outline: np.ndarray | None = None,
                             *, colorbar_label: str = "attention weight", vmax: float | None = None) -> Figure:
    """A heatmap of ``attention_map`` ``[H, W]`` over ``image`` ``[H, W, 3]``
    with a colour bar from 0 to ``vmax`` (default: the map's maximum).
    ``window_outline`` (``[H, W]`` bool, e.g. :func:`query_window_mask`): the
    heatmap is shown only inside it and its border drawn, so the image stays
    visible around the window. ``query_xy`` (x, y) is marked with a cross."""
    image = _check_image(image)
    attention_map = np.asarray(attention_map, dtype=np.float64)
    h, w = image.shape[:2]
    if attention_map.shape != (h, w):
        raise ValueError(f"The attention map {attention_map.shape} does not match the {h} x {w} image.")
    if window_outline is not None and np.asarray(window_outline).shape != (h, w):
        raise ValueError(f"The window outline {np.asarray(window_outline).shape} does not match the image.")
    fig = _new_figure((6.4, 5.6))
    ax = fig.add_subplot()
    extent = (0, w, h, 0)
    ax.imshow(image, extent=extent)
    shown = attention_map if window_outline is None else np.ma.masked_where(~np.asarray(window_outline, bool),
                                                                            attention_map)
    top = float(vmax) if vmax is not None else float(attention_map.max())
    heat = ax.imshow(shown, extent=extent, cmap=INFERNO, vmin=0.0, vmax=top if top > 0 else 1.0, alpha=0.65,
                     interpolation="nearest")
    fig.colorbar(heat, ax=ax, label=colorbar_label, shrink=0.9)
    if window_outline is not None:
        ax.add_collection(LineCollection(outline_segments(window_outline), colors="white", linewidths=1.5,
                                         path_effects=_outlined(width=3.0)))
    if query_xy is not None:
        x, y = math.floor(query_xy[0]) + 0.5, math.floor(query_xy[1]) + 0.5  # centre of the clicked pixel
        ax.plot([x], [y], marker="P", markersize=12, color="#00e5ff", markeredgecolor="black", linestyle="none",
                label="query")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False, fontsize=8)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (input pixels)")
    ax.set_ylabel("y (input pixels)")
    return fig
