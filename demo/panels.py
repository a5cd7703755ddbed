"""The "Inside Swin" panels for one selection (stage, block, head, query
point), as RGB arrays that any image component (and ``gradio_client``) can
carry: the figures of :mod:`demo.views`, drawn once per architecture and
stage as frames (:mod:`demo.frames`) with their changing parts hidden, and
each view painted into its frame from a captured forward's arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor, ImageDraw

import models
from demo import views
from demo.colormap import colorize, heatmap_overlay
from demo.frames import Frame
from demo.service import SwinForward
from models.swin import shifted_window_regions

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


def enlarged(picture: np.ndarray) -> np.ndarray:
    """A picture over a small model input (16 x 16 for swin_digits), enlarged
    by :func:`display_scale` with square pixels, so that it is seen rather than
    shown as a speck in its panel; others as they are."""
    return views.enlarge(picture, display_scale(picture.shape[:2]))


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


def cached(cache, key: tuple, make):
    """``cache.get(key)``, or ``make()`` put there (no cache: just ``make()``)."""
    value = cache.get(key) if cache is not None else None
    if value is None:
        value = make()
        if cache is not None:
            cache.put(key, value)
    return value


class FrameCache:
    """The frames (demo/frames.py) of the views, kept in the app's drawing
    cache: they depend on the architecture, the input size and the stage,
    never on the image, so they are drawn once per model and stage."""

    def __init__(self, cache):
        self.cache = cache

    def get(self, key: tuple, draw) -> Frame:
        return cached(self.cache, ("frame", *key), draw)


def placeholder(lines: int) -> str:
    """A title of ``lines`` lines, to reserve its room in a frame."""
    return "\n".join(["placeholder"] * lines)


def windows_frame(model, pretrained: bool, input_hw, stage: int) -> Frame:
    geometries = views.stage_geometries(model, input_hw)[stage]
    blank = np.zeros((*input_hw, 3), dtype=np.uint8)
    fig = views.window_grid_figure(blank, geometries, views.token_size_of(model, stage), stage)
    fig.suptitle(f"{model.spec.name}: window grids of stage {stage}"
                 + ("" if pretrained else " (geometry only; the model has untrained weights)"))
    panels_axes = fig.axes[:min(2, len(geometries))]
    for ax in panels_axes:
        for text in ax.texts:  # window numbers: painted over each image
            text.set_visible(False)
    return Frame.draw(fig, axes={f"block {i}": ax for i, ax in enumerate(panels_axes)})


def paint_windows(frame: Frame, image: np.ndarray, geometries, token_size: int) -> np.ndarray:
    painting = frame.paint()
    for block, geometry in list(enumerate(geometries))[:2]:
        (hp, wp), t = geometry.padded_size, token_size
        painting.image(f"block {block}", views.window_grid_overlay(image, geometry, t), (0, wp * t, hp * t, 0))
        gh, gw = geometry.grid
        if gh * gw <= 64:  # as views.window_grid_figure numbers them
            size = max(5.0, min(12.0, 64.0 / max(gh, gw)))
            for index in range(gh * gw):
                for r0, r1, c0, c1 in views.window_pieces(geometry, index):
                    painting.label(f"block {block}", (c0 + c1) / 2 * t, (r0 + r1) / 2 * t, str(index), size)
    return painting.result()


def mask_frame(geometry) -> Frame:
    fig = views.region_map_figure(geometry, 0, title=placeholder(1))
    ax_regions, ax_mask = fig.axes[:2]
    ax_regions.patches[-1].set_visible(False)  # the chosen window's outline: painted
    ax_regions.get_legend().get_texts()[-1].set_text("the window under the query point")
    ax_mask.set_title(placeholder(2), fontsize=10)
    return Frame.draw(fig, axes={"regions": ax_regions, "mask": ax_mask},
                      texts={"title": fig.suptitle(placeholder(1)), "mask title": ax_mask.title})


def paint_mask(frame: Frame, geometry, window_index: int, title: str) -> np.ndarray:
    (mh, mw), n = geometry.window_size, geometry.window_area
    # The window's row of shifted_window_mask, without building every window's.
    rows, cols = views.window_token_positions(geometry, window_index)
    regions = shifted_window_regions(geometry.padded_size, geometry.window_size, geometry.shift_size).numpy()
    wy, wx = divmod(int(window_index), geometry.grid[1])
    regions = regions[wy * mh:(wy + 1) * mh, wx * mw:(wx + 1) * mw].reshape(-1)  # shifted layout: window in place
    allowed = regions[:, None] == regions[None, :]
    colours = np.array([ImageColor.getrgb(views.BLOCKED_COLOUR), ImageColor.getrgb(views.ALLOWED_COLOUR)],
                       dtype=np.uint8)
    painting = frame.paint()
    painting.image("mask", colours[allowed.astype(np.intp)])
    separators = [((-0.5, k * mw - 0.5), (n - 0.5, k * mw - 0.5)) for k in range(1, mh)] + \
                 [((k * mw - 0.5, -0.5), (k * mw - 0.5, n - 0.5)) for k in range(1, mh)]
    painting.lines("mask", separators, "grey", 0.4)
    painting.rectangle("regions", wx * mw - 0.5, wy * mh - 0.5, (wx + 1) * mw - 0.5, (wy + 1) * mh - 0.5,
                       "white", 2.5, outline=5.0)
    real = int(((rows < geometry.feature_size[0]) & (cols < geometry.feature_size[1])).sum())
    painting.text("mask title", f"mask of window {window_index}: {int(allowed.sum())} of {n * n} pairs allowed"
                                f"\n({real} image tokens, {n - real} padding)")
    painting.text("title", title)
    return painting.result()


def overlay_frame(input_hw, colorbar_label: str, with_query: bool) -> Frame:
    blank = np.zeros((*input_hw, 3), dtype=np.uint8)
    fig = views.attention_overlay_figure(blank, np.zeros(input_hw), placeholder(1),
                                         query_xy=(0, 0) if with_query else None, colorbar_label=colorbar_label)
    ax, cax = fig.axes[:2]
    return Frame.draw(fig, axes={"image": ax}, colorbars={"colour": cax}, texts={"title": ax.title})


def paint_overlay(frame: Frame, image: np.ndarray, attention_map: np.ndarray, title: str,
                  query_xy=None, window: np.ndarray | None = None) -> np.ndarray:
    """What :func:`demo.views.attention_overlay_figure` draws, painted into its frame."""
    top = float(attention_map.max())
    top = top if top > 0 else 1.0
    painting = frame.paint()
    painting.image("image", heatmap_overlay(image, attention_map, top, where=window))
    painting.colorbar("colour", 0.0, top)
    if window is not None:
        painting.lines("image", views.outline_segments(window), "white", 1.5, outline=3.0)
    if query_xy is not None:
        painting.plus_marker("image", math.floor(query_xy[0]) + 0.5, math.floor(query_xy[1]) + 0.5, 12, "#00e5ff")
    painting.text("title", title)
    return painting.result()


def bias_frame(heads: int, span: int) -> Frame:
    fig = views.relative_position_bias_figure(np.zeros((heads, span, span)), title=placeholder(1))
    return Frame.draw(fig, axes={f"head {h}": ax for h, ax in enumerate(fig.axes[:heads])},
                      colorbars={"colour": fig.axes[heads]}, texts={"title": fig.suptitle(placeholder(1))})


def paint_bias(frame: Frame, bias: np.ndarray, title: str) -> np.ndarray:
    limit = float(np.abs(bias).max()) or 1.0
    painting = frame.paint()
    for h in range(bias.shape[0]):
        painting.image(f"head {h}", colorize(bias[h], -limit, limit, "RdBu_r"))
    painting.colorbar("colour", -limit, limit)
    painting.text("title", title)
    return painting.result()


def trained_weights(name: str) -> str:
    """What a model's weights are, when it has some: "trained here" for a model
    trained in the app, else "pretrained weights"."""
    return "trained here" if models.weights_status(name) == "trained" else "pretrained weights"


def render_swin_panels(forward: SwinForward, selection: Selection, cache=None) -> SwinPanels:
    """Every view of ``selection`` on one captured forward. ``cache`` (with
    ``get(key)`` / ``put(key, value)``, e.g. a ``ByteLRU``) keeps the views'
    frames (per architecture, input size and stage: matplotlib draws each
    once) and the painted views under keys holding all they depend on, so a
    click paints only the query's attention (and the mask of a new window)."""
    model = forward.model
    image = forward.model_input
    input_hw = image.shape[:2]
    stage, block, head, query_xy = selection.stage, selection.block, selection.head, selection.query_xy
    record = views.find_record(forward.records, stage, block)
    untrained = "" if forward.pretrained else f" ({UNTRAINED_TAG})"
    geometries = views.stage_geometries(model, input_hw)[stage]
    token_size = views.token_size_of(model, stage)
    frames = FrameCache(cache)
    name = model.spec.name

    windows = cached(cache, ("windows", forward.serial, stage), lambda: paint_windows(
        frames.get(("windows", name, forward.pretrained, input_hw, stage),
                   lambda: windows_frame(model, forward.pretrained, input_hw, stage)),
        image, geometries, token_size))

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
    mask = cached(cache, ("mask", mask_geometry, window_index, mask_title), lambda: paint_mask(
        frames.get(("mask", mask_geometry), lambda: mask_frame(mask_geometry)), mask_geometry, window_index,
        mask_title))

    query = views.query_attention(record, query_xy, head)
    attention = views.attention_title(record, head)
    query_view = paint_overlay(
        frames.get(("query", input_hw), lambda: overlay_frame(input_hw, "attention weight", True)), image,
        views.tokens_to_image(query.tokens, token_size, input_hw), f"query attention: {attention}{untrained}",
        query_xy=query_xy, window=views.query_window_mask(record, query_xy, input_hw))
    block_view = cached(cache, ("block", forward.serial, stage, block, head), lambda: paint_overlay(
        frames.get(("block", input_hw),
                   lambda: overlay_frame(input_hw, "attention received (sum over queries)", False)), image,
        views.block_attention_map(record, head, image_hw=input_hw), f"attention received: {attention}{untrained}"))

    def bias_view():
        attention_module = dict(((s, i), b) for s, i, b in model.stage_blocks())[(stage, block)].attn
        bias = attention_module.relative_position_bias_map().numpy().astype(np.float64)
        return paint_bias(frames.get(("bias", bias.shape), lambda: bias_frame(bias.shape[0], bias.shape[1])), bias,
                          f"relative position bias: stage {stage}, block {block}, all {record.num_heads} heads"
                          f"{untrained}")

    weights = trained_weights(name) if forward.pretrained else f"**{UNTRAINED_TAG}** — {forward.notice}"
    summary = (f"**{name}**, {weights}  \n"
               f"Query pixel ({query_xy[0]}, {query_xy[1]}) of the {input_hw[1]} x {input_hw[0]} model input is "
               f"token ({query.token[0]}, {query.token[1]}) of stage {stage} ({token_size} x {token_size} pixels), "
               f"in window {query.window} of block {block} (shift {record.shift_size[0]}, {record.shift_size[1]}); "
               f"{views.head_label(head)} of {record.num_heads}.")
    return SwinPanels(model_input=mark_query(image, query_xy, token_size, display_scale(input_hw)),
                      windows=windows, mask=mask, query_attention=query_view, block_attention=block_view,
                      bias=cached(cache, ("bias", forward.serial, stage, block), bias_view), summary=summary)
