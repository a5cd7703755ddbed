"""Why did the model say that? Class saliency for every architecture, Swin
attention rollout, and faithfulness scores. No Gradio, no matplotlib here.

Every method has one shape (as in Captum): built from a model, then
``attribute(x, target) -> torch.Tensor [B, H, W]`` float32 over the model
input, each map min 0, max 1, for the chosen class (an index, a class name,
or ``"top1"``)::

    import explain
    explain.GradCAM(model).attribute(x, target="tiger cat")      # [B, H, W]
    explain.saliency(model, x, "grad_rollout", target=281)       # np.ndarray [H, W]
    explain.methods_for(model)                                   # what applies to this model

Methods (:data:`METHODS`): ``gradcam``, ``gradcam_pp``, ``integrated_gradients``,
``smoothgrad``, ``occlusion`` for every architecture; ``rollout`` and
``grad_rollout`` for Swin Transformers. Faithfulness (deletion / insertion)
is in :mod:`explain.faithfulness`, the sanity check in :mod:`explain.sanity`,
pictures (colour map, overlay) in :mod:`explain.pictures`.
"""
from __future__ import annotations

import numpy as np
import torch

from . import faithfulness, pictures, sanity
from .base import Attribution, ExplainError, is_swin, normalise, resolve_target, target_indices, upsample
from .gradcam import GradCAM, GradCAMPlusPlus, default_layer
from .gradients import IntegratedGradients, Occlusion, SmoothGrad
from .rollout import GradRollout, Rollout, rollout_tokens

METHOD_CLASSES: dict[str, type[Attribution]] = {
    "gradcam": GradCAM,
    "gradcam_pp": GradCAMPlusPlus,
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "occlusion": Occlusion,
    "rollout": Rollout,
    "grad_rollout": GradRollout,
}
METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)
SWIN_ONLY: tuple[str, ...] = ("rollout", "grad_rollout")

# One line each, for the UI and the README.
DESCRIPTIONS = {
    "gradcam": "Grad-CAM: the last feature map's channels weighted by their mean gradient",
    "gradcam_pp": "Grad-CAM++: like Grad-CAM, channels weighted by positive gradients per position",
    "integrated_gradients": "Integrated Gradients (Captum): gradients along the path from a mean-colour image",
    "smoothgrad": "SmoothGrad (Captum): input gradients averaged over noisy copies",
    "occlusion": "Occlusion: how much the class score drops when a square is greyed out (no gradients)",
    "rollout": "Attention rollout (Swin): attention composed through windows, shifts and merges (class-agnostic)",
    "grad_rollout": "Gradient-weighted rollout (Swin): rollout of attention weighted by its positive gradient",
}

__all__ = [
    "Attribution", "DESCRIPTIONS", "ExplainError", "check_method", "faithfulness", "pictures", "sanity", "GradCAM", "GradCAMPlusPlus", "GradRollout",
    "IntegratedGradients", "METHODS", "METHOD_CLASSES", "Occlusion", "Rollout", "SWIN_ONLY", "SmoothGrad",
    "default_layer", "is_swin", "make", "methods_for", "normalise", "resolve_target", "rollout_tokens",
    "saliency", "target_indices", "upsample",
]


def methods_for(model: torch.nn.Module) -> list[str]:
    """The methods that apply to ``model``: all of them for a Swin, all but
    the rollouts for a CNN."""
    return [m for m in METHODS if is_swin(model) or m not in SWIN_ONLY]


def check_method(model: torch.nn.Module, method: str) -> str:
    """``method`` if it applies to ``model``; otherwise :class:`ExplainError`
    in one sentence."""
    if method not in METHOD_CLASSES:
        raise ExplainError(f"Unknown method {method!r}; choose one of: {', '.join(METHODS)}.")
    if method not in methods_for(model):
        name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
        raise ExplainError(f"{method} needs a Swin Transformer's attention and {name} has none; "
                           f"choose one of: {', '.join(methods_for(model))}.")
    return method


def make(model: torch.nn.Module, method: str, **options) -> Attribution:
    """The method object for ``model`` (``options`` go to its constructor)."""
    return METHOD_CLASSES[check_method(model, method)](model, **options)


def saliency(model: torch.nn.Module, x: torch.Tensor, method: str = "gradcam", target="top1",
             **options) -> np.ndarray:
    """One image's map: ``[H, W]`` float32, min 0, max 1, over the model input
    ``x`` (``[3, H, W]`` or ``[1, 3, H, W]``), for ``target`` (a class index,
    a class name or ``"top1"``)."""
    maps = make(model, method, **options).attribute(x, target)
    return maps[0].cpu().numpy().astype(np.float32)
