"""A matplotlib figure drawn once and painted into many times.

A view's axes, labels, legends and colour-bar gradient do not change when
the user clicks; its image, heatmap, colour-bar numbers and titles do. A
:class:`Frame` keeps the figure's pixels (drawn with the changing parts
hidden, their room reserved) and where each axes, colour bar and title sits
on them; :class:`Painting` copies those pixels and paints the changing parts
with NumPy and Pillow, in the figure's own font. A click then costs
milliseconds instead of a matplotlib draw (benchmarks/RESULTS.md, "Swin
views").
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

# Figures are independent (no pyplot), but the Agg renderer and font cache
# are shared: one draw at a time.
DRAW_LOCK = threading.Lock()
TICK_STEPS = [1, 2, 2.5, 5, 10]  # matplotlib's AutoLocator steps
PLACEHOLDER_TICKS = ("−0.0000", "−0.0000")  # reserve room for the widest label a paint writes
MINUS = "\u2212"  # matplotlib writes negative numbers with a true minus sign


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a matplotlib figure to uint8 RGB ``[H, W, 3]``."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    with DRAW_LOCK:
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@lru_cache(maxsize=16)
def font(pixels: int) -> ImageFont.FreeTypeFont:
    """matplotlib's default font at ``pixels`` pixels."""
    return ImageFont.truetype(font_manager.findfont(font_manager.FontProperties()), max(1, pixels))


@dataclass(frozen=True)
class Box:
    """A rectangle of the frame's pixels and the data coordinates it shows."""
    left: float
    top: float
    right: float
    bottom: float
    xlim: tuple[float, float] = (0.0, 1.0)
    ylim: tuple[float, float] = (0.0, 1.0)   # (bottom, top) as matplotlib gives them

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """Data ``(x, y)`` -> frame pixel ``(column, row)``."""
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        return (self.left + (x - x0) / (x1 - x0) * (self.right - self.left),
                self.top + (y1 - y) / (y1 - y0) * (self.bottom - self.top))


@dataclass(frozen=True)
class TextSlot:
    """Where a text that changes goes: its centre and size in pixels."""
    x: float
    y: float
    pixels: int
    colour: str = "black"


class Frame:
    """The pixels of a figure with its changing parts hidden, and where they go.

    Build with :meth:`draw`: ``axes`` name the axes to paint images into,
    ``colorbars`` the colour-bar axes whose numbers change (their ticks are
    hidden, room kept for the widest label), ``texts`` the text artists that
    change (hidden, their room kept).
    """

    def __init__(self, pixels: np.ndarray, axes: dict[str, Box], colorbars: dict[str, Box],
                 texts: dict[str, TextSlot], dpi: float):
        pixels.flags.writeable = False  # shared by every painting
        self.pixels, self.axes, self.colorbars, self.texts, self.dpi = pixels, axes, colorbars, texts, dpi

    @property
    def nbytes(self) -> int:
        return self.pixels.nbytes

    @classmethod
    def draw(cls, fig: Figure, axes: dict | None = None, colorbars: dict | None = None,
             texts: dict | None = None) -> "Frame":
        axes, colorbars, texts = axes or {}, colorbars or {}, texts or {}
        for cax in colorbars.values():
            cax.set_yticks(list(cax.get_ylim()), labels=PLACEHOLDER_TICKS)
            cax.tick_params(length=0, labelcolor="none")
        colours = {}
        for name, artist in texts.items():
            colours[name] = artist.get_color()
            artist.set_color("none")
        pixels = figure_to_array(fig)
        height = pixels.shape[0]

        def box(ax) -> Box:
            extent = ax.get_window_extent()
            return Box(extent.x0, height - extent.y1, extent.x1, height - extent.y0,
                       tuple(ax.get_xlim()), tuple(ax.get_ylim()))

        slots = {}
        for name, artist in texts.items():
            extent = artist.get_window_extent()
            slots[name] = TextSlot((extent.x0 + extent.x1) / 2, height - (extent.y0 + extent.y1) / 2,
                                   round(artist.get_fontsize() * fig.dpi / 72), colours[name])
        return cls(pixels, {k: box(ax) for k, ax in axes.items()}, {k: box(ax) for k, ax in colorbars.items()},
                   slots, fig.dpi)

    def paint(self) -> "Painting":
        return Painting(self)


class Painting:
    """A copy of a frame's pixels being painted; :meth:`result` gives them."""

    def __init__(self, frame: Frame):
        self.frame = frame
        self.canvas = Image.fromarray(frame.pixels)
        self.draw = ImageDraw.Draw(self.canvas)

    def points(self, size: float) -> int:
        """``size`` points in pixels."""
        return max(1, round(size * self.frame.dpi / 72))

    def image(self, axes: str, rgb: np.ndarray, extent: tuple[float, float, float, float] | None = None,
              smooth: bool = False) -> None:
        """``rgb`` ``[h, w, 3]`` into the axes, covering data ``extent``
        ``(x0, x1, y_bottom, y_top)`` (default: the axes' limits), as
        ``imshow(rgb, extent=extent)`` shows it; the axes' frame stays."""
        box = self.frame.axes[axes]
        x0, x1, y_bottom, y_top = extent if extent is not None else (*box.xlim, *box.ylim)
        left, top = box.to_pixel(x0, y_top)
        right, bottom = box.to_pixel(x1, y_bottom)
        left, top, right, bottom = round(left), round(top), round(right), round(bottom)
        picture = Image.fromarray(np.ascontiguousarray(rgb)).resize(
            (max(1, right - left), max(1, bottom - top)), Image.Resampling.BILINEAR if smooth
            else Image.Resampling.NEAREST)
        # Keep the axes' spines: paste inside the ring of pixels they cover.
        inner = (round(box.left) + 1, round(box.top) + 1, round(box.right) - 1, round(box.bottom) - 1)
        clip = (max(left, inner[0]), max(top, inner[1]), min(right, inner[2]), min(bottom, inner[3]))
        if clip[0] < clip[2] and clip[1] < clip[3]:
            self.canvas.paste(picture.crop((clip[0] - left, clip[1] - top, clip[2] - left, clip[3] - top)),
                              clip[:2])

    def colorbar(self, name: str, vmin: float, vmax: float) -> None:
        """Ticks and numbers of a colour bar that runs from ``vmin`` to ``vmax``."""
        box = self.frame.colorbars[name]
        vmax = vmax if vmax > vmin else vmin + 1.0
        length_points = (box.bottom - box.top) * 72 / self.frame.dpi
        size = self.points(10)  # matplotlib's tick labels: 10 points
        # matplotlib's AutoLocator: as many ticks as fit at two label heights apart.
        locator = MaxNLocator(nbins=max(1, math.floor(length_points / 20)), steps=TICK_STEPS)
        ticks = [t for t in locator.tick_values(vmin, vmax) if vmin - 1e-12 <= t <= vmax + 1e-12]
        step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(vmax - vmin)
        decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
        if step > 0 and abs(round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6:
            decimals += 1  # steps of 2.5
        tick_length = self.points(3.5)
        for value in ticks:
            y = box.bottom - (value - vmin) / (vmax - vmin) * (box.bottom - box.top)
            self.draw.line((box.right, y, box.right + tick_length, y), fill="black", width=1)
            label = f"{value:.{decimals}f}"
            label = MINUS + label[1:] if label.startswith("-") and float(label) != 0 else label.lstrip("-")
            self.draw.text((box.right + tick_length + self.points(3.5), y), label, fill="black", font=font(size),
                           anchor="lm")

    def text(self, name: str, value: str) -> None:
        """The text of a text slot, centred where the figure had it."""
        slot = self.frame.texts[name]
        self.draw.multiline_text((slot.x, slot.y), value, fill=slot.colour, font=font(slot.pixels), anchor="mm",
                                 align="center", spacing=round(slot.pixels * 0.2))

    def lines(self, axes: str, segments, colour: str, width: float, outline: float = 0.0) -> None:
        """Line segments ``((x0, y0), (x1, y1))`` in data coordinates, ``width``
        points wide; ``outline`` > 0 draws them first in black that wide."""
        box = self.frame.axes[axes]
        pixel_segments = [(box.to_pixel(*a), box.to_pixel(*b)) for a, b in segments]
        for fill, points in (("black", outline), (colour, width)):
            if points <= 0:
                continue
            for a, b in pixel_segments:
                self.draw.line((a, b), fill=fill, width=self.points(points))

    def rectangle(self, axes: str, x0: float, y0: float, x1: float, y1: float, colour: str, width: float,
                  outline: float = 0.0) -> None:
        """A rectangle's edges in data coordinates (see :meth:`lines`)."""
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        self.lines(axes, list(zip(corners, corners[1:] + corners[:1])), colour, width, outline)

    def plus_marker(self, axes: str, x: float, y: float, size: float, colour: str) -> None:
        """matplotlib's filled plus marker ``"P"`` of ``size`` points, black edge."""
        cx, cy = self.frame.axes[axes].to_pixel(x, y)
        half, arm = self.points(size) / 2, self.points(size) / 6
        outline = [(-arm, -half), (arm, -half), (arm, -arm), (half, -arm), (half, arm), (arm, arm), (arm, half),
                   (-arm, half), (-arm, arm), (-half, arm), (-half, -arm), (-arm, -arm)]
        self.draw.polygon([(cx + dx, cy + dy) for dx, dy in outline], fill=colour, outline="black", width=1)

    def label(self, axes: str, x: float, y: float, value: str, size: float, colour: str = "white",
              stroke: float = 2.5) -> None:
        """A text centred on data ``(x, y)``, ``size`` points, with a black stroke (a path effect's look)."""
        cx, cy = self.frame.axes[axes].to_pixel(x, y)
        self.draw.text((cx, cy), value, fill=colour, font=font(self.points(size)), anchor="mm",
                       stroke_width=max(1, round(self.points(stroke) / 2)), stroke_fill="black")

    def result(self) -> np.ndarray:
        pixels = np.asarray(self.canvas)
        pixels.flags.writeable = False
        return pixels
