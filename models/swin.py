"""Swin Transformer, after the seed implementation (patch embedding, window
partition / reverse, shifted-window mask, window attention with relative
position bias, blocks alternating shift 0 and M // 2, patch merging).

Tokens travel as feature maps ``[B, H, W, C]``. Window size and shift follow
the actual feature-map size at run time, as in the official implementation:
along a side that fits in one window the window shrinks to the map and there
is no shift. A map whose size is not a multiple of the window is padded
bottom / right *before* the cyclic shift, as in the seed.

Geometry lives in plain functions at module level so that tests and the app's
views can call them alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import _recorder_for
from .layers import DropPath

# The additive value that keeps tokens of different regions apart. The official
# implementation and timm use -100 (not -inf), so we do too: softmax then gives
# those pairs weights below 1e-43.
MASK_VALUE = -100.0


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class WindowGeometry:
    """How one block cuts a feature map into windows.

    ``feature_size`` (H, W) is the map as it arrives; ``padded_size`` (Hp, Wp)
    is it padded bottom / right to whole windows; ``window_size`` (Mh, Mw) and
    ``shift_size`` (sh, sw) are the ones actually used at this size.
    """

    feature_size: tuple[int, int]
    padded_size: tuple[int, int]
    window_size: tuple[int, int]
    shift_size: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        """Number of windows along (height, width)."""
        return (self.padded_size[0] // self.window_size[0], self.padded_size[1] // self.window_size[1])

    @property
    def num_windows(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def window_area(self) -> int:
        return self.window_size[0] * self.window_size[1]


def window_geometry(feature_size: Sequence[int], window_size: int, shifted: bool) -> WindowGeometry:
    """Window and shift for a map of ``feature_size`` (H, W).

    Per side: a map no larger than the window gets a window of its own size
    and no shift; otherwise the window is ``window_size`` and a shifted block
    shifts by ``window_size // 2``.
    """
    sizes, shifts, padded = [], [], []
    for side in feature_size:
        side = int(side)
        if side <= window_size:
            size, shift = side, 0
        else:
            size, shift = window_size, (window_size // 2 if shifted else 0)
        sizes.append(size)
        shifts.append(shift)
        padded.append(math.ceil(side / size) * size)
    return WindowGeometry(
        feature_size=(int(feature_size[0]), int(feature_size[1])),
        padded_size=(padded[0], padded[1]),
        window_size=(sizes[0], sizes[1]),
        shift_size=(shifts[0], shifts[1]),
    )


def window_partition(x: torch.Tensor, window_size: Sequence[int]) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B * nW, Mh, Mw, C]``, windows in row-major order.

    H and W must be multiples of the window.
    """
    b, h, w, c = x.shape
    mh, mw = window_size
    x = x.view(b, h // mh, mh, w // mw, mw, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, mh, mw, c)


def window_reverse(windows: torch.Tensor, window_size: Sequence[int], height: int, width: int) -> torch.Tensor:
    """``[B * nW, Mh, Mw, C]`` -> ``[B, H, W, C]``; undoes :func:`window_partition`."""
    mh, mw = window_size
    c = windows.shape[-1]
    x = windows.view(-1, height // mh, width // mw, mh, mw, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def shifted_window_regions(padded_size: Sequence[int], window_size: Sequence[int],
                           shift_size: Sequence[int]) -> torch.Tensor:
    """Region map ``[Hp, Wp]`` (int64) of a padded map after the cyclic shift.

    The shift brings the top rows / left columns round to the bottom / right,
    so the last window row and column hold tokens that were not neighbours.
    Along each side the map falls into up to three bands, and their products
    into up to 3 x 3 regions; tokens may only attend within their region.
    For a 9 x 9 map, window 3, shift 1 (the seed's table)::

        h\\w 0 1 2 3 4 5 6 7 8
        0 | 0 0 0 0 0 0 1 1 2
        1 | 0 0 0 0 0 0 1 1 2
        .   (rows 2 to 5 as row 0)
        6 | 3 3 3 3 3 3 4 4 5
        7 | 3 3 3 3 3 3 4 4 5
        8 | 6 6 6 6 6 6 7 7 8

    A side without shift is one band, so an unshifted map is all zeros.
    """
    def bands(length: int, window: int, shift: int) -> torch.Tensor:
        band = torch.zeros(length, dtype=torch.long)
        if shift > 0:
            band[length - window:length - shift] = 1
            band[length - shift:] = 2
        return band

    rows = bands(padded_size[0], window_size[0], shift_size[0])
    cols = bands(padded_size[1], window_size[1], shift_size[1])
    return rows[:, None] * 3 + cols[None, :]


def shifted_window_mask(padded_size: Sequence[int], window_size: Sequence[int],
                        shift_size: Sequence[int]) -> torch.Tensor:
    """Which token pairs may attend: ``[nW, N, N]`` bool, N = Mh * Mw.

    ``mask[w, i, j]`` is True when token i and token j of window w lie in the
    same region of :func:`shifted_window_regions`.
    """
    regions = shifted_window_regions(padded_size, window_size, shift_size)
    windows = window_partition(regions[None, :, :, None], window_size)  # [nW, Mh, Mw, 1]
    windows = windows.reshape(windows.shape[0], -1)  # [nW, N]
    return windows[:, :, None] == windows[:, None, :]


def relative_position_index(window_size: Sequence[int], table_window: int) -> torch.Tensor:
    """``[N, N]`` indices into a ``(2M - 1) ** 2`` bias table, M = ``table_window``.

    Token pair (i, j) at offset (dy, dx) = pos(i) - pos(j) reads row
    ``(dy + M - 1) * (2M - 1) + (dx + M - 1)``. A window smaller than M (a map
    smaller than the window) reads the centre of the same table.
    """
    mh, mw = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(mh), torch.arange(mw), indexing="ij")).flatten(1)  # [2, N]
    offsets = coords[:, :, None] - coords[:, None, :]  # [2, N, N]
    span = 2 * table_window - 1
    return (offsets[0] + table_window - 1) * span + (offsets[1] + table_window - 1)


def cyclic_shift(x: torch.Tensor, shift_size: Sequence[int]) -> torch.Tensor:
    """Roll ``[B, H, W, C]`` up / left by the shift (no-op without shift)."""
    if not any(shift_size):
        return x
    return torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))


def reverse_cyclic_shift(x: torch.Tensor, shift_size: Sequence[int]) -> torch.Tensor:
    if not any(shift_size):
        return x
    return torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))


def window_positions(geometry: WindowGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each window slot comes from: ``(rows, cols)``, each ``[nW, N]``
    int64, the position in the *original* padded map of token ``j`` of window
    ``w`` (windows row-major over the shifted map, tokens row-major inside).
    Positions ``>= feature_size`` are padding. The cyclic shift moves original
    position ``(y + sh, x + sw)`` (mod the padded size) to ``(y, x)``."""
    (hp, wp), (mh, mw), (sh, sw) = geometry.padded_size, geometry.window_size, geometry.shift_size
    wy, wx = torch.div(torch.arange(geometry.num_windows), wp // mw, rounding_mode="floor"), \
        torch.arange(geometry.num_windows) % (wp // mw)
    iy, ix = torch.div(torch.arange(mh * mw), mw, rounding_mode="floor"), torch.arange(mh * mw) % mw
    return (wy[:, None] * mh + iy[None, :] + sh) % hp, (wx[:, None] * mw + ix[None, :] + sw) % wp


@lru_cache(maxsize=128)
def window_token_order(geometry: WindowGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad, cyclic shift and window partition as one gather, and its inverse.

    Returns ``(to_windows, from_windows)``, int64:

    - ``to_windows`` ``[Hp * Wp]``: for each slot of the windows (window-major,
      tokens row-major inside), the flat index ``y * W + x`` of the token it
      holds, or ``H * W`` for a padding slot (callers append a zero token);
    - ``from_windows`` ``[H * W]``: for each token of the map, its slot.

    ``tokens[:, to_windows]`` equals padding, :func:`cyclic_shift` and
    :func:`window_partition` in turn; ``slots[:, from_windows]`` undoes them.
    One copy each way instead of three.
    """
    with torch.inference_mode(False):  # cached: must serve training as well as inference
        return _window_token_order(geometry)


def _window_token_order(geometry: WindowGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    (h, w), (hp, wp) = geometry.feature_size, geometry.padded_size
    rows, cols = window_positions(geometry)
    y, x = rows.reshape(-1), cols.reshape(-1)
    real = (y < h) & (x < w)
    to_windows = torch.where(real, y * w + x, h * w)
    from_windows = torch.empty(h * w, dtype=torch.long)
    from_windows[to_windows[real]] = torch.arange(hp * wp)[real]
    return to_windows, from_windows


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """Image ``[B, 3, H, W]`` -> tokens ``[B, H/p, W/p, C]``: a p x p, stride p
    convolution, then LayerNorm. Sides that are not multiples of p are padded
    bottom / right first, as in the seed."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int, norm_layer=nn.LayerNorm):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x).permute(0, 2, 3, 1)  # [B, H/p, W/p, C]
        return self.norm(x)


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)  # followed by exact GELU
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(dropout)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop1(F.gelu(self.fc1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.hidden(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned bias per
    head for every relative offset (dy, dx), |dy|, |dx| < M.

    This class is the ``fused`` layout (one ``qkv`` Linear, heads split as
    ``[B * nW, heads, N, d]``), the one every checkpoint uses. The other
    layouts of the attention lab (``models/swin_attention.py``) subclass it
    and replace only :meth:`build_projections`, :meth:`project_qkv`,
    :meth:`merge_heads` and :meth:`project_residual`; the relative position
    bias, the bias + shift mask and the softmax (:meth:`weigh_values`) are
    shared, so a variant differs from this one in one idea only.
    """

    attention = "fused"

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 attn_dropout: float = 0.0, proj_dropout: float = 0.0):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.build_projections(qkv_bias)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.proj_dropout = nn.Dropout(proj_dropout)
        # Set by models.swin_attention.capture_attention_logits only (the lab's statistics).
        self.logits_recorder = None

    def build_projections(self, qkv_bias: bool) -> None:
        self.qkv = nn.Linear(self.dim, self.dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(self.dim, self.dim)

    def relative_position_bias(self, window_size: Sequence[int]) -> torch.Tensor:
        """``[heads, N, N]`` bias for a window of ``window_size``."""
        index = relative_position_index(window_size, self.window_size).to(self.relative_position_bias_table.device)
        n = window_size[0] * window_size[1]
        return self.relative_position_bias_table[index.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()

    def relative_position_bias_map(self) -> torch.Tensor:
        """``[heads, 2M - 1, 2M - 1]``: the bias of each head by offset (dy, dx),
        offset (0, 0) at the centre."""
        span = 2 * self.window_size - 1
        return self.relative_position_bias_table.detach().T.reshape(self.num_heads, span, span)

    # -- the layout: how q, k, v are made and how heads are put back --------

    def project_qkv(self, x: torch.Tensor, num_windows: int, window_size: Sequence[int]):
        """``x`` ``[B * nW, N, C]`` -> q, k, v, each ``[B * nW, heads, N, d]``."""
        bw, n, _ = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def arrange_bias(self, attn_bias: torch.Tensor, batch_windows: int, num_windows: int) -> torch.Tensor:
        """``[nW or 1, heads, N, N]`` -> broadcastable against this layout's scores."""
        if attn_bias.shape[0] > 1:  # per-window shift mask: repeat it for every image of the batch
            n = attn_bias.shape[-1]
            return attn_bias.expand(batch_windows // num_windows, -1, -1, -1, -1).reshape(
                batch_windows, self.num_heads, n, n)
        return attn_bias

    def windows_first(self, scores: torch.Tensor, num_windows: int) -> torch.Tensor:
        """This layout's ``[..., N, N]`` scores -> ``[B, nW, heads, N, N]`` (what a record holds)."""
        n = scores.shape[-1]
        return scores.reshape(-1, num_windows, self.num_heads, n, n)

    def from_windows_first(self, attn: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        """Undoes :meth:`windows_first`: ``[B, nW, heads, N, N]`` -> this layout's ``shape``."""
        return attn.reshape(shape)

    def merge_heads(self, out: torch.Tensor, num_windows: int) -> torch.Tensor:
        """``[B * nW, heads, N, d]`` -> ``[B * nW, N, C]``, channel ``h * d + i``."""
        bw, _, n, _ = out.shape
        return out.transpose(1, 2).reshape(bw, n, self.dim)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The output projection, ``[..., C]`` -> ``[..., C]``."""
        return self.proj(x)

    def project_residual(self, x: torch.Tensor, residual: torch.Tensor, branch) -> torch.Tensor:
        """``residual + branch(project(x))``, ``x`` ``[B, L, C]``."""
        return residual + branch(self.proj(x))

    # -- shared by every layout ---------------------------------------------

    def weigh_values(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_bias: torch.Tensor,
                     num_windows: int, record=None) -> torch.Tensor:
        """softmax(q k^T / sqrt(d) + bias) v over the last two dimensions, in
        whatever layout the leading ones are. With ``record`` (or the lab's
        logits recorder) the explicit path runs and the softmaxed attention
        is handed over as ``[B, nW, heads, N, N]``; otherwise the fused kernel."""
        if record is None and self.logits_recorder is None:
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_bias.to(q.dtype),
                dropout_p=self.attn_dropout.p if self.training else 0.0)
        scores = (q * self.scale) @ k.transpose(-2, -1)  # [..., N, N]
        if self.logits_recorder is not None:
            self.logits_recorder(self.windows_first(scores, num_windows),
                                 self.windows_first(attn_bias.expand_as(scores), num_windows))
        attn = (scores + attn_bias).softmax(dim=-1)
        if record is not None:
            # The output is computed from the recorded tensor (a view of the
            # same numbers in the record's layout), so that a capture which
            # keeps gradients can differentiate with respect to it.
            recorded = self.windows_first(attn, num_windows)  # [B, nW, heads, N, N]
            record(recorded)  # the recorder detaches it unless the capture keeps gradients
            attn = self.from_windows_first(recorded, attn.shape)
        return self.attn_dropout(attn) @ v

    def attend(self, x: torch.Tensor, attn_bias: torch.Tensor, num_windows: int, record=None,
               window_size: Sequence[int] | None = None) -> torch.Tensor:
        """Attention inside each window, before the output projection.

        ``x``: ``[B * nW, N, C]``; ``attn_bias``: ``[nW or 1, heads, N, N]``,
        relative position bias plus shift mask; ``record``, when given, receives
        the softmaxed attention ``[B, nW, heads, N, N]`` (the explicit path);
        otherwise the fused kernel runs. ``window_size`` (Mh, Mw) is the
        window's token grid (square ``sqrt(N)`` when not given). Returns
        ``[B * nW, N, C]``.
        """
        bw, n, _ = x.shape
        if window_size is None:
            side = math.isqrt(n)
            window_size = (side, side)
        q, k, v = self.project_qkv(x, num_windows, window_size)
        out = self.weigh_values(q, k, v, self.arrange_bias(attn_bias, bw, num_windows), num_windows, record)
        return self.merge_heads(out, num_windows)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor, num_windows: int, record=None) -> torch.Tensor:
        """:meth:`attend`, then the output projection."""
        return self.proj_dropout(self.project(self.attend(x, attn_bias, num_windows, record)))


def window_attention_class(attention: str):
    """The attention module of layout ``attention`` (``"fused"``, or a name of
    ``models.swin_attention.ATTENTION_VARIANTS``): a callable taking
    :class:`WindowAttention`'s arguments."""
    # The variants subclass WindowAttention, so their module imports this one.
    from .swin_attention import ATTENTION_VARIANTS
    if attention not in ATTENTION_VARIANTS:
        raise ValueError(f"Unknown attention {attention!r}; choose one of: {', '.join(ATTENTION_VARIANTS)}.")
    return ATTENTION_VARIANTS[attention]


class SwinTransformerBlock(nn.Module):
    """LayerNorm -> (shifted) window attention -> residual; LayerNorm -> MLP -> residual."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shifted: bool = False,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, proj_dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm_layer=nn.LayerNorm,
                 attention: str = "fused"):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.shifted = shifted
        self.norm1 = norm_layer(dim)
        self.attn = window_attention_class(attention)(dim, window_size, num_heads, qkv_bias, attn_dropout,
                                                       proj_dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), proj_dropout)
        self._bias_cache: dict = {}

    def geometry(self, feature_size: Sequence[int]) -> WindowGeometry:
        return window_geometry(feature_size, self.window_size, self.shifted)

    def attention_bias(self, geometry: WindowGeometry, device, dtype) -> torch.Tensor:
        """``[nW or 1, heads, N, N]``: relative position bias plus the shift
        mask (0 / -100). Built once per input size while no gradient is being
        recorded; rebuilt when the bias table's values change (a copy of the
        table, a few thousand numbers, is kept to compare: loading weights
        writes into the same tensor)."""
        table = self.attn.relative_position_bias_table
        cacheable = not torch.is_grad_enabled()
        key = (geometry, device, dtype, torch.is_inference_mode_enabled())
        cached = self._bias_cache.get(key) if cacheable else None
        if cached is not None and torch.equal(cached[0], table):
            return cached[1]
        bias = self.attn.relative_position_bias(geometry.window_size).unsqueeze(0)  # [1, heads, N, N]
        if any(geometry.shift_size):
            allowed = shifted_window_mask(geometry.padded_size, geometry.window_size, geometry.shift_size)
            mask = torch.zeros(allowed.shape, dtype=bias.dtype).masked_fill_(~allowed, MASK_VALUE)
            bias = bias + mask.to(bias.device).unsqueeze(1)  # [nW, heads, N, N]
        bias = bias.to(device=device, dtype=dtype)
        if cacheable:
            if len(self._bias_cache) >= 4:
                self._bias_cache.clear()
            self._bias_cache[key] = (table.detach().clone(), bias)
        return bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        g = self.geometry((h, w))
        to_windows, from_windows = window_token_order(g)
        shortcut = x.reshape(b, h * w, c)
        x = self.norm1(shortcut)
        if g.padded_size != g.feature_size:
            x = torch.cat([x, x.new_zeros(b, 1, c)], dim=1)  # the zero token that padding slots read
        windows = x.index_select(1, to_windows.to(x.device)).view(-1, g.window_area, c)  # [B * nW, N, C]
        out = self.attn.attend(windows, self.attention_bias(g, x.device, x.dtype), g.num_windows,
                               _recorder_for(self, g), g.window_size)
        # Back to map order (shift undone, padding dropped), then the output
        # projection (per token, so it commutes with the reordering) and the residual.
        out = out.view(b, -1, c).index_select(1, from_windows.to(x.device))  # [B, H * W, C]
        x = self.attn.project_residual(out, shortcut, lambda t: self.drop_path(self.attn.proj_dropout(t)))
        x = x + self.drop_path(self.mlp.drop2(self.mlp.fc2(self.mlp.hidden(self.norm2(x)))))
        return x.view(b, h, w, c)


class PatchMerging(nn.Module):
    """``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]``: each 2 x 2
    neighbourhood concatenated (odd sides padded), normalised, projected."""

    def __init__(self, dim: int, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm = norm_layer(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            h, w = h + h % 2, w + w % 2
        # Channel order [x(0,0), x(1,0), x(0,1), x(1,1)] (row, col) as in the
        # official implementation: [B, H/2, 2(row), W/2, 2(col), C] -> col-major.
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One stage: ``depth`` blocks (even ones plain, odd ones shifted), then
    patch merging unless it is the last stage."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, proj_dropout: float = 0.0, attn_dropout: float = 0.0,
                 drop_path: Sequence[float] = (), norm_layer=nn.LayerNorm, downsample: bool = False,
                 attention: str = "fused"):
        super().__init__()
        drop_path = list(drop_path) or [0.0] * depth
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, num_heads, window_size, shifted=(i % 2 == 1), mlp_ratio=mlp_ratio,
                                 qkv_bias=qkv_bias, proj_dropout=proj_dropout, attn_dropout=attn_dropout,
                                 drop_path=drop_path[i], norm_layer=norm_layer, attention=attention)
            for i in range(depth)])
        self.downsample = PatchMerging(dim, norm_layer) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class SwinTransformer(nn.Module):
    def __init__(self, patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000, embed_dim: int = 96,
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1, norm_layer=nn.LayerNorm,
                 attention: str = "fused"):
        """``attention`` picks the window attention's layout (the attention
        lab's variants, ``models.swin_attention.ATTENTION_VARIANTS``); the
        default ``"fused"`` is the one checkpoints are written in."""
        super().__init__()
        self.patch_size = patch_size
        self.attention = attention
        self.window_size = window_size
        self.depths = tuple(depths)
        self.num_heads = tuple(num_heads)
        self.num_classes = num_classes
        self.num_features = int(embed_dim * 2 ** (len(depths) - 1))
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, norm_layer)
        self.pos_drop = nn.Dropout(drop_rate)
        # Stochastic depth grows linearly with depth.
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            start = sum(depths[:i])
            self.layers.append(BasicLayer(
                int(embed_dim * 2 ** i), depth, heads, window_size, mlp_ratio, qkv_bias, drop_rate,
                attn_drop_rate, rates[start:start + depth], norm_layer, downsample=i < len(depths) - 1,
                attention=attention))
        self.norm = norm_layer(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    def feature_sizes(self, input_hw: Sequence[int]) -> list[tuple[int, int]]:
        """``(H, W)`` in tokens of each stage for an input of ``input_hw``
        pixels: the patch embedding pads to whole patches, each patch merging
        to an even size, so stage 0 is ``ceil(side / patch)`` and each next
        stage ``ceil(previous / 2)``."""
        h, w = math.ceil(input_hw[0] / self.patch_size), math.ceil(input_hw[1] / self.patch_size)
        sizes = []
        for _ in self.depths:
            sizes.append((h, w))
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return sizes

    def stage_blocks(self):
        """``(stage, block_index, block)`` for every block, in forward order."""
        for s, layer in enumerate(self.layers):
            for i, block in enumerate(layer.blocks):
                yield s, i, block

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.patch_embed(x))  # [B, H/p, W/p, C]
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)  # [B, h, w, num_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(1, 2))  # global average pool
        return self.head(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------
# Checkpoint conversion
# --------------------------------------------------------------------------

def convert_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's Swin layout -> ours.

    timm puts patch merging at the *start* of stages 1..3
    (``layers.{i}.downsample``) and the classifier in ``head.fc``; the seed
    (and we) merge at the *end* of stages 0..2 and call the classifier
    ``head``. Buffers timm may carry (``relative_position_index``,
    ``attn_mask``) are rebuilt here from the geometry, so they are dropped.
    """
    out = {}
    for key, value in state_dict.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue
        parts = key.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)
        elif parts[:2] == ["head", "fc"]:
            parts = ["head"] + parts[2:]
        out[".".join(parts)] = value
    return out
