"""The attention lab's Swin window-attention variants, and converters between
their weight layouts.

Each variant answers one question people ask when they read transformer code:

- ``separate``: does computing q, k, v with three Linears instead of one
  fused ``Linear(C, 3C)`` change the model? (:class:`SeparateWindowAttention`)
- ``heads_first``: does the layout of the seed's "open-source" attention
  (``[B, heads, windows, N, d]``, heads concatenated channel-minor) change it?
  (:class:`HeadsFirstWindowAttention`)
- ``parameter_randn`` / ``parameter_xavier`` / ``parameter_linear``: what
  happens when the Linears become raw ``nn.Parameter`` matrices, initialised
  as the question does (``torch.randn``), with Xavier, or with the
  distribution ``nn.Linear`` uses? (:class:`ParameterWindowAttention`)
- ``primer_shared`` / ``primer_per_head``: Primer-EZ's depthwise convolution
  on q, k and v, adapted to images (:class:`PrimerSharedWindowAttention`,
  :class:`PrimerPerHeadWindowAttention`).

All subclass :class:`models.swin.WindowAttention` (the ``fused`` layout) and
keep its relative position bias, shift mask and softmax. Pick one with
``SwinTransformer(attention=...)`` or ``models.create_model(name,
attention=...)``. The converters (:func:`convert_attention_state_dict`,
:func:`with_attention`) copy weights across layouts so that ``fused``,
``separate``, ``heads_first`` and ``parameter_*`` compute the same function,
and the ``primer_*`` variants equal ``fused`` with identity kernels.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .swin import WindowAttention

# --------------------------------------------------------------------------
# Layouts of the same function
# --------------------------------------------------------------------------


class SeparateWindowAttention(WindowAttention):
    """q, k and v from three ``Linear(C, C)`` instead of one ``Linear(C, 3C)``.
    The fused Linear's weight is the three stacked ``[q; k; v]``, so the
    same weights give the same function."""

    attention = "separate"

    def build_projections(self, qkv_bias: bool) -> None:
        self.q = nn.Linear(self.dim, self.dim, bias=qkv_bias)
        self.k = nn.Linear(self.dim, self.dim, bias=qkv_bias)
        self.v = nn.Linear(self.dim, self.dim, bias=qkv_bias)
        self.proj = nn.Linear(self.dim, self.dim)

    def project_qkv(self, x, num_windows, window_size):
        bw, n, _ = x.shape

        def heads(t):  # [B * nW, N, C] -> [B * nW, heads, N, d]
            return t.view(bw, n, self.num_heads, self.head_dim).transpose(1, 2)

        return heads(self.q(x)), heads(self.k(x)), heads(self.v(x))


class HeadsFirstWindowAttention(WindowAttention):
    """The seed's "open-source" layout: tokens ``[B, T, N, C]`` (T windows),
    q, k, v as ``[B, heads, T, N, d]``, and the heads put back channel-minor:
    ``(attn @ v).permute(0, 2, 3, 4, 1)`` makes channel ``i * heads + h``
    where the fused layout has ``h * d + i``. The output projection therefore
    reads its input channels in another order: the same function needs
    ``proj.weight``'s columns permuted (:func:`convert_attention_state_dict`
    does it); with the fused layout's weights copied as they are, it is a
    different model."""

    attention = "heads_first"

    def project_qkv(self, x, num_windows, window_size):
        bw, n, c = x.shape
        b = bw // num_windows
        # [B, T, N, 3C] -> [3, B, heads, T, N, d], as the seed's permute(3, 0, 4, 1, 2, 5)
        qkv = self.qkv(x).view(b, num_windows, n, 3, self.num_heads, self.head_dim).permute(3, 0, 4, 1, 2, 5)
        return qkv.unbind(0)

    def arrange_bias(self, attn_bias, batch_windows, num_windows):
        return attn_bias.transpose(0, 1)  # [nW or 1, heads, N, N] -> [heads, nW or 1, N, N]

    def windows_first(self, scores, num_windows):
        return scores.permute(0, 2, 1, 3, 4)  # [B, heads, T, N, N] -> [B, T, heads, N, N]

    def from_windows_first(self, attn, shape):
        return attn.permute(0, 2, 1, 3, 4)  # [B, T, heads, N, N] -> [B, heads, T, N, N]

    def merge_heads(self, out, num_windows):
        b, heads, t, n, d = out.shape
        return out.permute(0, 2, 3, 4, 1).reshape(b * t, n, self.dim)  # [B * T, N, d * heads]


# --------------------------------------------------------------------------
# Raw parameter matrices (the nn.Parameter question)
# --------------------------------------------------------------------------

PARAMETER_INITS = ("randn", "xavier", "linear")


def init_matrix(matrix: torch.Tensor, init: str) -> None:
    """Fill a ``[fan_in, fan_out]`` matrix (used as ``x @ matrix``), in place.

    ``randn``: standard normal, std 1, as the question's
    ``nn.Parameter(torch.randn(dim, inner_dim))``; ``xavier``: Xavier
    normal, std ``sqrt(2 / (fan_in + fan_out))``, the answer's suggestion;
    ``linear``: what ``nn.Linear`` draws, uniform with bound
    ``1 / sqrt(fan_in)`` (std ``1 / sqrt(3 * fan_in)``). ``randn`` is
    ``sqrt(3 * fan_in)`` times ``linear``'s std.
    """
    with torch.no_grad():
        if init == "randn":
            matrix.normal_(0.0, 1.0)
        elif init == "xavier":
            nn.init.xavier_normal_(matrix)
        elif init == "linear":
            # nn.Linear.reset_parameters on its [fan_out, fan_in] weight: a transposed view.
            nn.init.kaiming_uniform_(matrix.T, a=math.sqrt(5))
        else:
            raise ValueError(f"Unknown init {init!r}; choose one of: {', '.join(PARAMETER_INITS)}.")


class ParameterWindowAttention(WindowAttention):
    """q, k, v and the output projection as raw ``nn.Parameter`` matrices
    used as ``x @ W`` (``W`` ``[C_in, C_out]``: the transpose of a Linear's
    weight), as in the question. Biases are raw parameters too, zeros at
    init as the model's Linears get theirs, so that with the same weights
    this is the ``fused`` function and at init only the weights'
    distribution (``init``: :func:`init_matrix`) differs."""

    attention = "parameter"

    def __init__(self, *args, init: str = "randn", **kwargs):
        self.init = init
        super().__init__(*args, **kwargs)
        self.attention = f"parameter_{init}"

    def build_projections(self, qkv_bias: bool) -> None:
        c = self.dim
        for name in ("to_q", "to_k", "to_v", "projection"):
            matrix = nn.Parameter(torch.empty(c, c))
            init_matrix(matrix, self.init)
            setattr(self, name, matrix)
        for name in ("q_bias", "k_bias", "v_bias"):
            setattr(self, name, nn.Parameter(torch.zeros(c)) if qkv_bias else None)
        self.proj_bias = nn.Parameter(torch.zeros(c))

    def project_qkv(self, x, num_windows, window_size):
        bw, n, _ = x.shape

        def heads(matrix, bias):  # x @ W (+ b): [B * nW, N, C] -> [B * nW, heads, N, d]
            t = x @ matrix if bias is None else torch.addmm(bias, x.reshape(bw * n, -1), matrix)
            return t.view(bw, n, self.num_heads, self.head_dim).transpose(1, 2)

        return heads(self.to_q, self.q_bias), heads(self.to_k, self.k_bias), heads(self.to_v, self.v_bias)

    def project(self, x):
        return x @ self.projection + self.proj_bias

    def project_residual(self, x, residual, branch):
        return residual + branch(self.project(x))


def _parameter_variant(init: str):
    def build(*args, **kwargs):
        return ParameterWindowAttention(*args, init=init, **kwargs)
    build.__name__ = f"parameter_{init}"
    return build


# --------------------------------------------------------------------------
# Primer-EZ: a depthwise convolution after the q, k, v projections
# --------------------------------------------------------------------------


class WindowDepthwiseConv(nn.Module):
    """A k x k depthwise convolution over a window's 2-D token grid, applied
    to q, k or v ``[B * nW, heads, N, d]`` (N = Mh * Mw, row-major).

    ``kernels`` = 1: one kernel shared by every channel of every head (the
    seed's "shared" variant); ``kernels`` = C: one kernel for each channel of
    each head (the seed's "per head" variant, ``groups = heads * d``, which is
    Primer-EZ's depthwise convolution). Each kernel has a bias, as the seed's
    ``Conv1d`` has.

    Why 2-D and not the seed's 1-D: Primer-EZ is a language model; its
    convolution runs along the sequence and is causal (padded on both sides,
    the right end cropped) so that a token never sees a later one. An image
    has no "later": a window's tokens are a 2-D grid flattened row-major, so
    a 1-D convolution over that sequence would make the last token of a row
    a neighbour of the first token of the next row, miss the tokens directly
    above and below, and (causal) see only left / up. A centred 3 x 3 kernel
    over the (Mh, Mw) grid sees the 8 spatial neighbours on every side.

    Padding at window edges: zeros. The convolution runs inside each window,
    as attention does, so a token on the window's border sees zeros where
    its neighbour lies in the next window: nothing crosses a window, and the
    model's receptive field grows only through the shifted windows, as
    Swin's does. In a shifted block the last row / column of windows holds
    regions that the cyclic shift brought together; the shift mask keeps
    attention apart across those region borders, the convolution (like a
    convolution over the shifted map would) mixes the one token on either
    side of such a border. Padding tokens (maps not a multiple of the
    window) are the zero token's q / k / v, as attention sees them.
    """

    def __init__(self, kernels: int, kernel_size: int = 3):
        super().__init__()
        self.kernels = kernels
        self.conv = nn.Conv2d(kernels, kernels, kernel_size, padding=kernel_size // 2, groups=kernels)

    def forward(self, x: torch.Tensor, window_size: Sequence[int]) -> torch.Tensor:
        bw, heads, n, d = x.shape
        mh, mw = window_size
        c = heads * d
        grid = x.permute(0, 1, 3, 2).reshape(bw, c, mh, mw)  # [B * nW, C, Mh, Mw], channel h * d + i
        weight, bias = self.conv.weight, self.conv.bias
        if self.kernels == 1:
            # The shared kernel repeated for every channel: the same sums as a
            # 1-channel convolution over B * nW * C little images, in one
            # depthwise call (several times faster on CPU).
            weight, bias = weight.expand(c, -1, -1, -1), bias.expand(c)
        out = F.conv2d(grid, weight, bias, padding=self.conv.padding, groups=c)
        return out.reshape(bw, heads, d, n).permute(0, 1, 3, 2)

    def set_identity(self) -> None:
        """Kernels that pass each token through unchanged (centre tap 1, bias 0)."""
        with torch.no_grad():
            self.conv.weight.zero_()
            k = self.conv.kernel_size[0] // 2
            self.conv.weight[:, :, k, k] = 1.0
            self.conv.bias.zero_()


class PrimerWindowAttention(WindowAttention):
    """The fused layout, then a :class:`WindowDepthwiseConv` on each of q, k
    and v (three convolutions, as Primer-EZ has). Kernels start with
    ``nn.Conv2d``'s own initialisation, as the seed's ``Conv1d`` does."""

    kernels_per_channel = False

    def build_projections(self, qkv_bias: bool) -> None:
        super().build_projections(qkv_bias)
        kernels = self.dim if self.kernels_per_channel else 1
        self.q_conv = WindowDepthwiseConv(kernels)
        self.k_conv = WindowDepthwiseConv(kernels)
        self.v_conv = WindowDepthwiseConv(kernels)

    def project_qkv(self, x, num_windows, window_size):
        q, k, v = super().project_qkv(x, num_windows, window_size)  # each [B * nW, heads, N, d]
        return self.q_conv(q, window_size), self.k_conv(k, window_size), self.v_conv(v, window_size)

    def set_identity(self) -> None:
        for conv in (self.q_conv, self.k_conv, self.v_conv):
            conv.set_identity()


class PrimerSharedWindowAttention(PrimerWindowAttention):
    """Primer-EZ with one 3 x 3 kernel shared by all channels (per q, k, v)."""

    attention = "primer_shared"
    kernels_per_channel = False


class PrimerPerHeadWindowAttention(PrimerWindowAttention):
    """Primer-EZ with a 3 x 3 kernel for each channel of each head (per q, k, v)."""

    attention = "primer_per_head"
    kernels_per_channel = True


def primer_parameter_count(dim: int, kernels_per_channel: bool, kernel_size: int = 3) -> int:
    """Parameters the Primer convolutions add to one block's attention:
    three convolutions (q, k, v), each ``kernels * (k * k + 1)`` (weights and
    a bias per kernel), ``kernels`` = C or 1."""
    kernels = dim if kernels_per_channel else 1
    return 3 * kernels * (kernel_size * kernel_size + 1)


ATTENTION_VARIANTS: dict[str, Callable[..., WindowAttention]] = {
    "fused": WindowAttention,
    "separate": SeparateWindowAttention,
    "heads_first": HeadsFirstWindowAttention,
    **{f"parameter_{init}": _parameter_variant(init) for init in PARAMETER_INITS},
    "primer_shared": PrimerSharedWindowAttention,
    "primer_per_head": PrimerPerHeadWindowAttention,
}


# --------------------------------------------------------------------------
# Converters
# --------------------------------------------------------------------------

def _layout(attention: str) -> str:
    if attention not in ATTENTION_VARIANTS:
        raise ValueError(f"Unknown attention {attention!r}; choose one of: {', '.join(ATTENTION_VARIANTS)}.")
    return "parameter" if attention.startswith("parameter_") else attention


def _to_fused(p: dict[str, torch.Tensor], layout: str, heads: int) -> dict[str, torch.Tensor]:
    """One attention's tensors (keys relative to the module) in ``layout`` -> fused."""
    out = {"relative_position_bias_table": p["relative_position_bias_table"]}
    if layout == "separate":
        out["qkv.weight"] = torch.cat([p["q.weight"], p["k.weight"], p["v.weight"]])
        if "q.bias" in p:
            out["qkv.bias"] = torch.cat([p["q.bias"], p["k.bias"], p["v.bias"]])
        out["proj.weight"], out["proj.bias"] = p["proj.weight"], p["proj.bias"]
    elif layout == "parameter":
        out["qkv.weight"] = torch.cat([p["to_q"].T, p["to_k"].T, p["to_v"].T])
        if "q_bias" in p:
            out["qkv.bias"] = torch.cat([p["q_bias"], p["k_bias"], p["v_bias"]])
        out["proj.weight"], out["proj.bias"] = p["projection"].T, p["proj_bias"]
    elif layout == "heads_first":
        out.update({k: v for k, v in p.items() if k.startswith("qkv.")})
        c = p["proj.weight"].shape[1]
        # column i * heads + h (heads first) -> h * d + i (fused)
        out["proj.weight"] = p["proj.weight"].view(-1, c // heads, heads).transpose(1, 2).reshape(-1, c)
        out["proj.bias"] = p["proj.bias"]
    elif layout.startswith("primer_"):
        kernels = {k: v for k, v in p.items() if "_conv." in k}
        for name in ("q_conv", "k_conv", "v_conv"):
            weight, bias = kernels[f"{name}.conv.weight"], kernels[f"{name}.conv.bias"]
            centre = weight.shape[-1] // 2
            identity = torch.zeros_like(weight)
            identity[:, :, centre, centre] = 1
            if not (torch.equal(weight, identity) and not bias.any()):
                raise ValueError(f"{layout} with trained kernels is not the fused function; only identity "
                                 "kernels convert to another layout.")
        out.update({k: v for k, v in p.items() if k.startswith(("qkv.", "proj."))})
    else:  # fused
        out.update({k: v for k, v in p.items() if k.startswith(("qkv.", "proj."))})
    return out


def _from_fused(p: dict[str, torch.Tensor], layout: str, heads: int) -> dict[str, torch.Tensor]:
    out = {"relative_position_bias_table": p["relative_position_bias_table"]}
    weight, bias = p["qkv.weight"], p.get("qkv.bias")
    if layout == "separate":
        for name, w in zip("qkv", weight.chunk(3)):
            out[f"{name}.weight"] = w
        if bias is not None:
            for name, b in zip("qkv", bias.chunk(3)):
                out[f"{name}.bias"] = b
        out["proj.weight"], out["proj.bias"] = p["proj.weight"], p["proj.bias"]
    elif layout == "parameter":
        for name, w in zip(("to_q", "to_k", "to_v"), weight.chunk(3)):
            out[name] = w.T.contiguous()  # x @ W: [C_in, C_out]
        if bias is not None:
            for name, b in zip(("q_bias", "k_bias", "v_bias"), bias.chunk(3)):
                out[name] = b
        out["projection"], out["proj_bias"] = p["proj.weight"].T.contiguous(), p["proj.bias"]
    elif layout == "heads_first":
        out.update({k: v for k, v in p.items() if k.startswith("qkv.")})
        c = p["proj.weight"].shape[1]
        # column h * d + i (fused) -> i * heads + h (heads first)
        out["proj.weight"] = p["proj.weight"].view(-1, heads, c // heads).transpose(1, 2).reshape(-1, c)
        out["proj.bias"] = p["proj.bias"]
    elif layout.startswith("primer_"):
        out.update({k: v for k, v in p.items() if k.startswith(("qkv.", "proj."))})
        c = weight.shape[1]
        kernels = c if layout == "primer_per_head" else 1
        for name in ("q_conv", "k_conv", "v_conv"):
            identity = torch.zeros(kernels, 1, 3, 3, dtype=weight.dtype)
            identity[:, :, 1, 1] = 1
            out[f"{name}.conv.weight"], out[f"{name}.conv.bias"] = identity, torch.zeros(kernels, dtype=weight.dtype)
    else:
        out.update({k: v for k, v in p.items() if k.startswith(("qkv.", "proj."))})
    return out


def convert_attention_state_dict(state_dict: dict[str, torch.Tensor], source: str,
                                 target: str) -> dict[str, torch.Tensor]:
    """A Swin state dict whose attention is in layout ``source`` (a name of
    :data:`ATTENTION_VARIANTS`) -> the same weights in layout ``target``:
    ``SwinTransformer(attention=target)`` loads it strictly and computes the
    same function. Between ``fused``, ``separate``, ``heads_first`` and
    ``parameter_*`` the conversion is exact and round-trips; to ``primer_*``
    it adds identity kernels, and from ``primer_*`` it accepts only identity
    kernels (trained kernels compute something no other layout can).
    Tensors outside the attention pass through."""
    source_layout, target_layout = _layout(source), _layout(target)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    out = {}
    for key, value in state_dict.items():
        prefix, sep, rest = key.partition(".attn.")
        if sep:
            groups.setdefault(prefix + sep, {})[rest] = value
        else:
            out[key] = value
    for prefix, tensors in groups.items():
        heads = tensors["relative_position_bias_table"].shape[1]
        fused = _to_fused(tensors, source_layout, heads)
        for rest, value in _from_fused(fused, target_layout, heads).items():
            out[prefix + rest] = value
    return out


def with_attention(model: nn.Module, attention: str) -> nn.Module:
    """A copy of the Swin ``model`` whose window attentions use layout
    ``attention``, with ``model``'s weights converted
    (:func:`convert_attention_state_dict`). ``model`` is left as it is."""
    source = getattr(model, "attention", None)
    if source is None:
        raise TypeError(f"{type(model).__name__} is not a Swin Transformer with window attention.")
    _layout(attention)
    copied = copy.deepcopy(model)
    for block in (m for m in copied.modules() if isinstance(getattr(m, "attn", None), WindowAttention)):
        old = block.attn
        build = ATTENTION_VARIANTS[attention]
        block.attn = build(old.dim, old.window_size, old.num_heads, _has_qkv_bias(old),
                           old.attn_dropout.p, old.proj_dropout.p)
    copied.attention = attention
    copied.load_state_dict(convert_attention_state_dict(model.state_dict(), source, attention))
    return copied


def _has_qkv_bias(attn: WindowAttention) -> bool:
    names = dict(attn.named_parameters())
    return any(key in names for key in ("qkv.bias", "q.bias", "q_bias"))


# --------------------------------------------------------------------------
# What the lab measures inside the attention
# --------------------------------------------------------------------------

def query_key_weights(attn: WindowAttention) -> list[torch.Tensor]:
    """The parameters that make q and k (whole tensors; for the fused layout
    the qkv weight, of which the first 2C rows are q and k: see
    :func:`query_key_gradients`)."""
    if isinstance(attn, SeparateWindowAttention):
        return [attn.q.weight, attn.k.weight]
    if isinstance(attn, ParameterWindowAttention):
        return [attn.to_q, attn.to_k]
    return [attn.qkv.weight]


def query_key_gradients(attn: WindowAttention) -> list[torch.Tensor]:
    """The gradients that reached the q and k projection weights (no biases,
    no Primer kernels), after a backward pass."""
    if isinstance(attn, (SeparateWindowAttention, ParameterWindowAttention)):
        return [w.grad for w in query_key_weights(attn) if w.grad is not None]
    grad = attn.qkv.weight.grad
    return [] if grad is None else [grad[:2 * attn.dim]]


@contextlib.contextmanager
def capture_attention_logits(model: nn.Module):
    """Inside, every window attention of ``model`` appends ``(scores, bias)``
    to the yielded list, both ``[B, nW, heads, N, N]``: ``scores`` is
    ``q k^T / sqrt(d)``, ``bias`` the relative position bias plus the shift
    mask (-100 where tokens may not attend); their sum enters the softmax.
    Gradients flow as usual. Sets a plain attribute on the modules: not for
    a model other threads are running."""
    records: list[tuple[torch.Tensor, torch.Tensor]] = []
    modules = [m for m in model.modules() if isinstance(m, WindowAttention)]
    if not modules:
        raise TypeError(f"{type(model).__name__} has no Swin window attention.")

    def record(scores: torch.Tensor, bias: torch.Tensor) -> None:
        records.append((scores.detach(), bias.detach()))

    for m in modules:
        m.logits_recorder = record
    try:
        yield records
    finally:
        for m in modules:
            m.logits_recorder = None


__all__ = [
    "ATTENTION_VARIANTS", "HeadsFirstWindowAttention", "PARAMETER_INITS", "ParameterWindowAttention",
    "PrimerPerHeadWindowAttention", "PrimerSharedWindowAttention", "SeparateWindowAttention",
    "WindowDepthwiseConv", "capture_attention_logits", "convert_attention_state_dict", "init_matrix",
    "primer_parameter_count", "query_key_gradients", "query_key_weights", "with_attention",
]
