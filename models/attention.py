"""Recording the softmaxed attention of Swin blocks.

``capture_attention(model)`` is a context manager. Inside it, every Swin block
of ``model`` that runs appends one :class:`AttentionRecord` to the list the
context manager yields. Blocks check a context variable, so a capture sees only
forwards run in its own thread / async context, and other requests sharing the
model are untouched. Outside it the blocks take the fused attention path and
nothing is recorded.

The attention tensor has shape ``[B, nW, heads, N, N]`` with N = Mh * Mw:
``attention[b, w, h, i, j]`` is how much token i of window w attends to token
j, in head h. Windows are numbered row-major over the *padded, cyclically
shifted* map; tokens row-major inside their window. To place a window token on
the feature map: its position in the shifted padded map is
``(wy * Mh + iy, wx * Mw + ix)``; add the shift and take it modulo the padded
size to undo the cyclic shift; positions at or beyond ``feature_size`` are
padding. A feature-map token covers ``token_size`` x ``token_size`` input
pixels.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import torch

_ACTIVE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("swin_attention_capture", default=None)


@dataclass
class AttentionRecord:
    stage: int                      # 0-based stage
    block: int                      # 0-based block within the stage; odd blocks are the shifted ones
    window_size: tuple[int, int]    # (Mh, Mw) used at this feature-map size
    shift_size: tuple[int, int]     # (sh, sw) cyclic shift, (0, 0) for a plain block
    feature_size: tuple[int, int]   # (H, W) tokens before padding
    padded_size: tuple[int, int]    # (Hp, Wp) after padding to whole windows
    num_heads: int
    token_size: int                 # input pixels per token side: patch_size * 2 ** stage
    attention: torch.Tensor         # [B, nW, heads, N, N], rows sum to 1

    @property
    def grid(self) -> tuple[int, int]:
        return (self.padded_size[0] // self.window_size[0], self.padded_size[1] // self.window_size[1])


@contextlib.contextmanager
def capture_attention(model: torch.nn.Module, keep_grad: bool = False):
    """Record the attention of every Swin block of ``model`` run inside.

    Yields a list of :class:`AttentionRecord`, one per block per forward, in
    forward order (12 for one Swin-T forward). Raises ``TypeError`` for a model
    without Swin blocks.

    By default the recorded attention is detached. With ``keep_grad=True``
    (and gradients enabled in the forward) it stays in the autograd graph:
    ``torch.autograd.grad(logit, [r.attention for r in records])`` then gives
    each block's d(logit)/d(attention), as gradient-weighted rollout needs.
    """
    stage_blocks = getattr(model, "stage_blocks", None)
    if stage_blocks is None:
        raise TypeError(f"{type(model).__name__} has no Swin blocks whose attention could be captured.")
    patch_size = model.patch_size
    records: list[AttentionRecord] = []
    targets = {id(block): (stage, index, patch_size * 2 ** stage, records, keep_grad)
               for stage, index, block in stage_blocks()}
    current = _ACTIVE.get()
    merged = dict(current or {})
    merged.update(targets)
    token = _ACTIVE.set(merged)
    try:
        yield records
    finally:
        _ACTIVE.reset(token)


def _recorder_for(block, geometry):
    """Called by a Swin block on every forward: a function that stores its
    attention, or None (the fast path) when no capture covers the block."""
    active = _ACTIVE.get()
    if active is None:
        return None
    target = active.get(id(block))
    if target is None:
        return None
    stage, index, token_size, records, keep_grad = target

    def record(attention: torch.Tensor) -> None:
        if not keep_grad:
            attention = attention.detach()
        records.append(AttentionRecord(
            stage=stage, block=index, window_size=geometry.window_size, shift_size=geometry.shift_size,
            feature_size=geometry.feature_size, padded_size=geometry.padded_size,
            num_heads=block.num_heads, token_size=token_size, attention=attention))

    return record
