"""Attention rollout through a Swin Transformer's real token geometry.

Abnar & Zuidema (2020) multiply, block by block, each layer's attention
(plus the identity of the residual path, rows renormalised) to see how much
each output token is made of each input token. Their recipe, and Chefer et
al.'s gradient-weighted one (2021), assume one global token set and a CLS
token. A Swin has neither: attention is confined to windows that move
(cyclic shift, with a mask keeping wrapped-around tokens apart), maps are
padded to whole windows, and patch merging turns 2 x 2 tokens into one.
docs/rollout.md writes the composition rule down with a worked example; in
short, per block the dense token-to-token matrix is

    B = rownorm(A + I)   (rollout)          B = I + A   (grad_rollout, Chefer's R <- R + A R)

where ``A[i, j]`` is the head-mean attention of token i to token j when both
lie in one window of the shifted, padded map (zero otherwise; keys that are
padding are dropped: they are a constant zero token that carries nothing
from the image), and ``A`` is ``E_h[(dy/dA_h * A_h)^+]`` for the class-specific
version. Patch merging is the matrix that gives each merged token the mean
of its (real) 2 x 2 children.

Output token set: the model has no CLS token; its classifier reads the
*mean of the final tokens* (global average pooling). So the map is
``(1/N) 1^T R``: the share of every input patch in the pooled feature the
classifier sees, one value per ``patch_size`` x ``patch_size`` input patch.

The product is never formed: a row vector over the final tokens is carried
backwards through the blocks, window by window (``nW x N x N`` per block,
instead of ``(H W)^2``).
"""
from __future__ import annotations

import torch

import models
from models.swin import WindowGeometry, window_token_order

from .base import Attribution


def record_geometry(record: models.AttentionRecord) -> WindowGeometry:
    return WindowGeometry(feature_size=tuple(record.feature_size), padded_size=tuple(record.padded_size),
                          window_size=tuple(record.window_size), shift_size=tuple(record.shift_size))


def propagate_block(relevance: torch.Tensor, attention: torch.Tensor, geometry: WindowGeometry,
                    renormalise: bool) -> torch.Tensor:
    """``relevance @ B`` for one block's matrix B (see the module docstring).

    ``relevance``: ``[B, H * W]`` over the block's output tokens (row-major);
    ``attention``: ``[B, nW, N, N]`` (heads already reduced). Returns ``[B, H * W]``
    over its input tokens.
    """
    batch, tokens = relevance.shape
    to_windows, from_windows = window_token_order(geometry)  # slot -> token (H*W = padding), token -> slot
    to_windows, from_windows = to_windows.to(relevance.device), from_windows.to(relevance.device)
    real_slot = (to_windows < tokens).to(attention.dtype)  # [nW * N]
    n = geometry.window_area
    if renormalise:
        # Row sums over real keys, per token: rownorm(A + I) = (A + I) / (1 + r).
        row_sums = (attention * real_slot.view(1, -1, 1, n)).sum(-1).reshape(batch, -1)  # [B, nW * N]
        relevance = relevance / (1 + row_sums.index_select(1, from_windows))
    padded = torch.cat([relevance, relevance.new_zeros(batch, 1)], dim=1)  # the padding slots read a zero
    slots = padded.index_select(1, to_windows).view(batch, -1, 1, n)  # [B, nW, 1, N]
    mixed = (slots @ attention).reshape(batch, -1)  # [B, nW * N] over key slots
    return relevance + mixed.index_select(1, from_windows)  # padding keys dropped


def propagate_merge(relevance: torch.Tensor, merged_size: tuple[int, int],
                    size: tuple[int, int]) -> torch.Tensor:
    """``relevance @ M`` for patch merging ``size`` (H, W) -> ``merged_size``
    (ceil(H/2), ceil(W/2)): each child token gets its parent's value divided by
    the parent's number of real children (odd sides are padded with zeros)."""
    batch = relevance.shape[0]
    height, width = size
    ys, xs = torch.arange(height, device=relevance.device), torch.arange(width, device=relevance.device)
    rows_per_parent = torch.bincount(ys // 2, minlength=merged_size[0]).to(relevance.dtype)
    cols_per_parent = torch.bincount(xs // 2, minlength=merged_size[1]).to(relevance.dtype)
    parent = relevance.view(batch, *merged_size) / (rows_per_parent[:, None] * cols_per_parent[None, :])
    return parent.index_select(1, ys // 2).index_select(2, xs // 2).reshape(batch, height * width)


def rollout_tokens(records: list[models.AttentionRecord], attentions: list[torch.Tensor],
                   renormalise: bool = True) -> torch.Tensor:
    """Compose the blocks of one forward into ``[B, H0, W0]``: for each
    stage-0 token (input patch), its share in the mean of the final tokens.

    ``records``: the forward's attention records (forward order);
    ``attentions``: per record the ``[B, nW, N, N]`` matrix to compose (the
    head mean for rollout, the gradient-weighted one for grad_rollout).
    """
    last = records[-1]
    batch = attentions[-1].shape[0]
    final_tokens = last.feature_size[0] * last.feature_size[1]
    relevance = attentions[-1].new_full((batch, final_tokens), 1.0 / final_tokens)
    for index in range(len(records) - 1, -1, -1):
        record = records[index]
        relevance = propagate_block(relevance, attentions[index], record_geometry(record), renormalise)
        if index > 0 and records[index - 1].stage != record.stage:  # patch merging between the two stages
            relevance = propagate_merge(relevance, tuple(record.feature_size), tuple(records[index - 1].feature_size))
    first = records[0].feature_size
    return relevance.view(batch, *first)


def tokens_to_pixels(tokens: torch.Tensor, patch_size: int, size: tuple[int, int]) -> torch.Tensor:
    """``[B, h, w]`` token values -> ``[B, H, W]``: each token fills its
    ``patch_size`` x ``patch_size`` input patch (the patch embedding padded
    the input bottom / right; that padding is cut off)."""
    pixels = tokens.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)
    return pixels[:, :size[0], :size[1]]


class Rollout(Attribution):
    """``Rollout(model).attribute(x, target) -> [B, H, W]``: attention rollout
    (class-agnostic: ``target`` is checked, not used)."""

    name = "rollout"
    needs_swin = True

    def relevance(self, x, targets):
        with torch.inference_mode(), models.capture_attention(self.model) as records:
            self.model(x)
            tokens = rollout_tokens(records, [r.attention.float().mean(dim=2) for r in records], renormalise=True)
        return tokens_to_pixels(tokens.clone(), self.model.patch_size, x.shape[-2:])


class GradRollout(Attribution):
    """``GradRollout(model).attribute(x, target) -> [B, H, W]``: rollout of
    each block's attention weighted by its positive gradient for the target
    class, head-averaged (Chefer et al., 2021), composed with ``I + A``."""

    name = "grad_rollout"
    needs_swin = True

    def relevance(self, x, targets):
        with torch.enable_grad(), models.capture_attention(self.model, keep_grad=True) as records:
            logits = self.model(x)
            picked = logits.gather(1, targets.view(-1, 1)).sum()
            gradients = torch.autograd.grad(picked, [r.attention for r in records])
        with torch.no_grad():
            weighted = [(g * r.attention).clamp_min(0).mean(dim=2).float() for r, g in zip(records, gradients)]
            tokens = rollout_tokens(records, weighted, renormalise=False)
        return tokens_to_pixels(tokens, self.model.patch_size, x.shape[-2:])
