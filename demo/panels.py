"""The "Inside Swin" panels for one selection (stage, block, head, query
point): the drawing functions of :mod:`demo.views` applied to a captured
forward, rendered to RGB arrays that any image component (and
``gradio_client``) can carry.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from demo import views
from demo.service import SwinForward

UNTRAINED_TAG = "untrained weights"

# One line per view, shown under it in the UI and in the README.
EXPLANATIONS = {
    "windows": "Each block attends only inside windows of M x M tokens; odd blocks shift the grid by M/2 so that "
               "neighbouring windows exchange information (coloured windows are the pieces the shift wraps round).",
    "mask": "After the cyclic shift a window can hold tokens from up to four image regions; the mask lets a token "
            "attend only to tokens of its own region (left: regions of the shifted map, right: the mask of the "
            "window under the query point; click near the bottom or right edge to see a split window).",
    "query": "How much the token under the query point attends to every token of its window (zero outside the "
             "window), placed back on the image with the shift undone.",
    "block": "For every token, the total attention it receives from the queries of its window in this block.",
    "bias": "The learned relative position bias added to the attention logits of each head, by the offset "
            "(dy, dx) between query and key tokens.",
}


class SelectionError(ValueError):
    """A stage, block, head or point the model does not have; one sentence."""


@dataclass
class Selection:
    stage: int
    block: int
    head: int | None      # None: the mean of the heads
    query_xy: tuple[int, int]


@dataclass
class SwinPanels:
    model_input: np.ndarray       # [H*s, W*s, 3] the image the model saw, query marked, s = display_scale
    windows: np.ndarray           # [h, w, 3] each: a rendered figure
    mask: np.ndarray
    query_attention: np.ndarray
    block_attention: np.ndarray
    bias: np.ndarray
    summary: str                  # markdown: model, weights, what is shown


# Figures are independent (no pyplot), but the Agg renderer and font cache are
# shared; drawing one at a time costs nothing next to the forward.
_DRAW_LOCK = threading.Lock()


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure to uint8 RGB ``[H, W, 3]``."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    with _DRAW_LOCK:
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    return pixels


def parse_head(head) -> int | None:
    """``None``, ``""``, ``"mean"`` or a negative number: the mean of the heads;
    otherwise a head number (int or a string of one)."""
    if head is None:
        return None
    if isinstance(head, str):
        text = head.strip().lower()
        if text in ("", "mean", "mean of heads", "all"):
            return None
        text = text.removeprefix("head").strip()
        try:
            head = float(text)
        except ValueError:
            shown = f" {head!r}" if len(head) <= 20 and head.replace(" ", "").isalnum() else ""
            raise SelectionError(f"The head{shown} is not a number; give a head number or \"mean\".") from None
    if isinstance(head, float) and not head.is_integer():
        raise SelectionError(f"The head {head} is not a whole number; give a head number or \"mean\".")
    head = int(head)
    return None if head < 0 else head


def check_selection(model, input_hw: tuple[int, int], stage, block, head, query_x, query_y) -> Selection:
    """Validate a selection against the model; raises :class:`SelectionError`."""
    name = model.spec.name
    depths, heads = model.depths, model.num_heads
    stage = _whole(stage, "stage")
    if not 0 <= stage < len(depths):
        raise SelectionError(f"{name} has stages 0 to {len(depths) - 1}; choose one of those, not {stage}.")
    block = _whole(block, "block")
    if not 0 <= block < depths[stage]:
        raise SelectionError(f"Stage {stage} of {name} has blocks 0 to {depths[stage] - 1}; choose one of those, "
                             f"not {block}.")
    head = parse_head(head)
    if head is not None and head >= heads[stage]:
        raise SelectionError(f"Stage {stage} of {name} has heads 0 to {heads[stage] - 1}; choose one of those "
                             f"or \"mean\", not {head}.")
    height, width = input_hw
    x, y = _whole(query_x, "query x"), _whole(query_y, "query y")
    if not (0 <= x < width and 0 <= y < height):
        raise SelectionError(f"The query point ({x}, {y}) is outside the {width} x {height} model input; choose x "
                             f"from 0 to {width - 1} and y from 0 to {height - 1}.")
    return Selection(stage, block, head, (x, y))


def _whole(value, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SelectionError(f"The {what} must be a number, not {value!r}.") from None
    if not math.isfinite(number) or not number.is_integer():
        raise SelectionError(f"The {what} must be a whole number, not {value!r}.")
    return int(number)


def display_scale(input_hw: tuple[int, int]) -> int:
    """Whole-number enlargement that shows a small model input (32 x 32 for
    swin_cifar) at a clickable size; 1 for the usual 224 or 384 pixels."""
    return max(1, 256 // max(input_hw))


def mark_query(image: np.ndarray, query_xy: tuple[int, int], token_size: int, scale: int = 1) -> np.ndarray:
    """The image, enlarged ``scale`` times (nearest neighbour), with the query
    pixel's token outlined and a cross on the pixel."""
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    height, width = image.shape[:2]
    x, y = query_xy[0] * scale + scale // 2, query_xy[1] * scale + scale // 2
    token_size *= scale
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    left, top = (x // token_size) * token_size, (y // token_size) * token_size
    right, bottom = min(width, left + token_size) - 1, min(height, top + token_size) - 1
    arm = max(3, min(height, width) // 20)
    for colour, grow in (("black", 1), ("#00e5ff", 0)):
        draw.rectangle((left - grow, top - grow, right + grow, bottom + grow), outline=colour)
        draw.line((x - arm, y, x + arm, y), fill=colour, width=1 + 2 * grow)
        draw.line((x, y - arm, x, y + arm), fill=colour, width=1 + 2 * grow)
    return np.asarray(canvas)


def render_swin_panels(forward: SwinForward, selection: Selection, cache=None) -> SwinPanels:
    """Every view of ``selection`` on one captured forward. ``cache`` (with
    ``get(key)`` / ``put(key, array)``, e.g. a ``ByteLRU``): views drawn
    before for this forward are taken from it, and new ones put in; each key
    holds everything its view depends on."""
    model = forward.model
    image = forward.model_input
    input_hw = image.shape[:2]
    stage, block, head, query_xy = selection.stage, selection.block, selection.head, selection.query_xy
    record = views.find_record(forward.records, stage, block)
    untrained = "" if forward.pretrained else f" ({UNTRAINED_TAG})"
    geometries = views.stage_geometries(model, input_hw)[stage]
    token_size = views.token_size_of(model, stage)

    def drawn(what: tuple, draw) -> np.ndarray:
        key = (forward.serial, *what)
        pixels = cache.get(key) if cache is not None else None
        if pixels is None:
            pixels = figure_to_array(draw())
            pixels.flags.writeable = False  # shared by every request that shows it
            if cache is not None:
                cache.put(key, pixels)
        return pixels

    def windows_figure():
        fig = views.window_grid_figure(image, geometries, token_size, stage)
        fig.suptitle(f"{model.spec.name}: window grids of stage {stage}"
                     + ("" if forward.pretrained else " (geometry only; the model has untrained weights)"))
        return fig

    # The mask belongs to a shifted block: the chosen one, or its shifted partner in the stage.
    mask_block = block if any(geometries[block].shift_size) or block % 2 or block + 1 >= len(geometries) \
        else block + 1
    mask_geometry = geometries[mask_block]
    window_of_token, _ = views.window_layout(mask_geometry)
    row, column = views.token_under(query_xy, token_size, mask_geometry.feature_size, input_hw)
    window_index = int(window_of_token[row, column])
    sh, sw = mask_geometry.shift_size
    mask_title = (f"stage {stage}, block {mask_block}: shifted-window mask, shift ({sh}, {sw}), "
                  f"window {window_index} (under the query point)")

    query = views.query_attention(record, query_xy, head)
    attention = views.attention_title(record, head)

    def query_figure():
        return views.attention_overlay_figure(
            image, views.query_attention_map(record, query_xy, head, image_hw=input_hw),
            f"query attention: {attention}{untrained}", query_xy=query_xy,
            window_outline=views.query_window_mask(record, query_xy, input_hw))

    def block_figure():
        return views.attention_overlay_figure(
            image, views.block_attention_map(record, head, image_hw=input_hw),
            f"attention received: {attention}{untrained}", colorbar_label="attention received (sum over queries)")

    def bias_figure():
        attention_module = dict(((s, i), b) for s, i, b in model.stage_blocks())[(stage, block)].attn
        return views.relative_position_bias_figure(
            attention_module.relative_position_bias_map(),
            title=f"relative position bias: stage {stage}, block {block}, all {record.num_heads} heads{untrained}")

    weights = "pretrained weights" if forward.pretrained else f"**{UNTRAINED_TAG}** — {forward.notice}"
    summary = (f"**{model.spec.name}**, {weights}  \n"
               f"Query pixel ({query_xy[0]}, {query_xy[1]}) of the {input_hw[1]} x {input_hw[0]} model input is "
               f"token ({query.token[0]}, {query.token[1]}) of stage {stage} ({token_size} x {token_size} pixels), "
               f"in window {query.window} of block {block} (shift {record.shift_size[0]}, {record.shift_size[1]}); "
               f"{views.head_label(head)} of {record.num_heads}.")
    return SwinPanels(
        model_input=mark_query(image, query_xy, token_size, display_scale(input_hw)),
        windows=drawn(("windows", stage), windows_figure),
        mask=drawn(("mask", stage, mask_block, window_index),
                   lambda: views.region_map_figure(mask_geometry, window_index, title=mask_title)),
        query_attention=drawn(("query", stage, block, head, tuple(query_xy)), query_figure),
        block_attention=drawn(("block", stage, block, head), block_figure),
        bias=drawn(("bias", stage, block), bias_figure), summary=summary)
