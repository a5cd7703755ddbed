"""What every explanation method shares: the target class, the input batch,
the model's family, and turning a raw relevance map into the package's
output (``[B, H, W]`` float32 over the model input, each map min 0, max 1).

A method is a small class built from a model (and, for layer methods, a
layer) with one call, ``attribute(x, target) -> torch.Tensor [B, H, W]``, as
in Captum: the caller swaps methods without rewriting anything.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

Target = int | str | Sequence[int] | torch.Tensor


class ExplainError(ValueError):
    """Input an explanation cannot be made for; the message is one sentence."""


def is_swin(model: torch.nn.Module) -> bool:
    """A Swin Transformer of this project (it exposes its blocks for attention capture)."""
    return callable(getattr(model, "stage_blocks", None))


def labels_of(model: torch.nn.Module) -> tuple[str, ...]:
    spec = getattr(model, "spec", None)
    if spec is not None:
        return tuple(spec.labels)
    return tuple(f"class {i}" for i in range(int(getattr(model, "num_classes", 0))))


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]`` or ``[B, 3, H, W]`` -> ``[B, 3, H, W]`` float32, detached."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        raise ExplainError("The input must be an image tensor [3, H, W] or a batch [B, 3, H, W].")
    x = x.detach()
    return (x.unsqueeze(0) if x.dim() == 3 else x).float()


def resolve_target(model: torch.nn.Module, target, logits: torch.Tensor | None = None) -> int:
    """One class index from a class index, a class name, ``"top1"`` (the
    most likely class: needs ``logits``) or a digit string."""
    labels = labels_of(model)
    count = len(labels)
    if isinstance(target, torch.Tensor) and target.numel() == 1:
        target = int(target.item())
    if isinstance(target, str):
        text = target.strip()
        if text.lower() in ("top1", "top-1", "top 1"):
            if logits is None:
                raise ExplainError("Target 'top1' needs the model's logits; pass a class index or name instead.")
            return int(logits.reshape(-1, count)[0].argmax())
        if text in labels:
            return labels.index(text)
        lowered = [label.lower() for label in labels]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        if text.lstrip("-").isdigit():
            target = int(text)
        else:
            raise ExplainError(f"{text!r} is not a class of this model; give one of its {count} class names, "
                               f"an index from 0 to {count - 1}, or 'top1'.")
    if isinstance(target, bool) or not isinstance(target, int):
        raise ExplainError(f"The target must be a class name, an index from 0 to {count - 1}, or 'top1'.")
    if not 0 <= target < count:
        raise ExplainError(f"Class index {target} is out of range; this model has classes 0 to {count - 1}.")
    return target


def target_indices(model: torch.nn.Module, target: Target, batch: int,
                   logits: torch.Tensor | None = None) -> torch.Tensor:
    """``[B]`` int64 class indices: one target for the whole batch, or one per image."""
    if isinstance(target, torch.Tensor) and target.numel() > 1:
        values = target.reshape(-1).tolist()
    elif isinstance(target, (list, tuple)):
        values = list(target)
    else:
        values = None
    if values is None:
        if isinstance(target, str) and target.strip().lower() in ("top1", "top-1", "top 1") and logits is not None:
            return logits.argmax(dim=-1).long()
        return torch.full((batch,), resolve_target(model, target, logits), dtype=torch.long)
    if len(values) != batch:
        raise ExplainError(f"Got {len(values)} targets for {batch} images; give one target, or one per image.")
    return torch.tensor([resolve_target(model, v, logits[i:i + 1] if logits is not None else None)
                         for i, v in enumerate(values)], dtype=torch.long)


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``[B, h, w]`` -> ``[B, H, W]``, bilinear (as Grad-CAM's paper and Captum's
    ``LayerAttribution.interpolate`` do)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Each map of ``[B, H, W]`` scaled to min 0, max 1 (float32). A constant
    map (e.g. Grad-CAM whose ReLU removed everything) becomes all zeros: it
    ranks no pixel above another."""
    maps = maps.detach().float()
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    flat = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(torch.float32).tiny),
                       torch.zeros_like(flat))
    return torch.nan_to_num(flat, nan=0.0).reshape(maps.shape).clamp_(0, 1)


class Attribution:
    """Base of every method: ``Method(model).attribute(x, target) -> [B, H, W]``.

    ``target``: a class index, a class name, ``"top1"``, or one of these per
    image. Subclasses implement :meth:`relevance` (a raw, non-negative map at
    any resolution); this class resolves the target, upsamples to the input
    and normalises.
    """

    name = ""
    needs_swin = False

    def __init__(self, model: torch.nn.Module):
        if self.needs_swin and not is_swin(model):
            raise ExplainError(f"{self.name} needs a Swin Transformer's attention; {type(model).__name__} has none, "
                               "so choose gradcam or another method.")
        self.model = model

    def attribute(self, x: torch.Tensor, target: Target = "top1") -> torch.Tensor:
        # Callers (the app) may hold tensors made under inference mode, which
        # autograd cannot use: every method runs outside it, on a copy.
        with torch.inference_mode(False):
            x = as_batch(x)
            if x.is_inference():
                x = x.clone()
            return self._attribute(x, target)

    def _attribute(self, x: torch.Tensor, target: Target) -> torch.Tensor:
        needs_logits = isinstance(target, str) and target.strip().lower() in ("top1", "top-1", "top 1")
        logits = None
        if needs_logits:
            with torch.no_grad():
                logits = self.model(x)
        targets = target_indices(self.model, target, x.shape[0], logits)
        raw = self.relevance(x, targets)
        return normalise(upsample(raw.float(), x.shape[-2:]))

    def relevance(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError
