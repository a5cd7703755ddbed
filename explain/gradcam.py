"""Grad-CAM (Selvaraju et al., 2017) and Grad-CAM++ (Chattopadhay et al., 2018).

Both read one layer's activations A ``[B, K, h, w]`` and the gradient of the
class logit y with respect to them, then weigh the K channels:

- Grad-CAM: ``w_k = mean_ij dy/dA_kij``; map = ReLU(sum_k w_k A_k).
- Grad-CAM++: ``w_k = sum_ij a_kij ReLU(dy/dA_kij)`` with
  ``a = g^2 / (2 g^2 + sum_ij A_kij g^3)``, g = dy/dA (the paper's closed
  form for an exponential of the logit, as most implementations use).

Default layers: an EfficientNet's last convolution (the 1 x 1 head conv,
``[B, C, 7, 7]`` at 224 pixels); a Swin's last stage, whose tokens ``[B, H, W, C]``
already are a spatial map (nothing to reshape).

Only the part of the model above the layer records gradients: the forward runs
without autograd up to the layer, whose output becomes a fresh leaf, and the
rest runs with autograd, so ``torch.autograd.grad`` differentiates the logit
with respect to that leaf alone (as Captum's LayerGradCam takes
``torch.autograd.grad`` on the layer's output) and no parameter gradient is
ever computed. This works the same on a model prepared for inference (folded
BatchNorm, parameters without ``requires_grad``) and on a plain one.
"""
from __future__ import annotations

import threading

import torch
from torch import nn

from .base import Attribution, ExplainError, is_swin


def default_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM reads by default (see the module docstring)."""
    if is_swin(model):
        return model.layers[-1]
    head = getattr(model, "head", None)
    if isinstance(head, nn.Sequential) and hasattr(head, "project_conv"):
        return head.project_conv
    raise ExplainError(f"There is no default Grad-CAM layer for {type(model).__name__}; pass layer=...")


def layer_activation_and_gradient(model: nn.Module, layer: nn.Module, x: torch.Tensor,
                                  targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(activation, d(logit of target)/d(activation), logits)`` for the
    layer's output, each image's own target logit (summed over the batch:
    the images do not interact, so each gets its own gradient)."""
    captured = {}
    # Module hooks are seen by every thread that runs the model (the app
    # classifies with the same model object on other threads): act only on
    # this thread's forward.
    owner = threading.get_ident()

    def keep_output(module, inputs, output):
        if threading.get_ident() != owner:
            return None
        if not isinstance(output, torch.Tensor):
            raise ExplainError(f"Layer {type(module).__name__} does not return one tensor; choose another layer.")
        leaf = output.detach().requires_grad_(True)
        captured["activation"] = leaf
        # From here on the forward records a graph; below the layer it did not.
        torch.set_grad_enabled(True)
        return leaf

    handle = layer.register_forward_hook(keep_output)
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    if "activation" not in captured:
        raise ExplainError(f"Layer {type(layer).__name__} did not run in the model's forward; choose another layer.")
    activation = captured["activation"]
    picked = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
    (gradient,) = torch.autograd.grad(picked, activation)
    return activation.detach(), gradient, logits.detach()


class GradCAM(Attribution):
    """``GradCAM(model, layer=None).attribute(x, target) -> [B, H, W]``."""

    name = "gradcam"

    def __init__(self, model: nn.Module, layer: nn.Module | None = None, channels_last: bool | None = None):
        super().__init__(model)
        self.layer = layer if layer is not None else default_layer(model)
        # Swin tokens are [B, H, W, C]; convolutions give [B, C, H, W].
        self.channels_last = is_swin(model) if channels_last is None else channels_last

    def activations_and_gradients(self, x, targets):
        activation, gradient, _ = layer_activation_and_gradient(self.model, self.layer, x, targets)
        if self.channels_last:
            activation, gradient = activation.permute(0, 3, 1, 2), gradient.permute(0, 3, 1, 2)
        return activation.float(), gradient.float()  # [B, K, h, w]

    def relevance(self, x, targets):
        activation, gradient = self.activations_and_gradients(x, targets)
        weights = gradient.mean(dim=(2, 3), keepdim=True)  # [B, K, 1, 1]
        return torch.relu((weights * activation).sum(dim=1))  # [B, h, w]


class GradCAMPlusPlus(GradCAM):
    """``GradCAMPlusPlus(model, layer=None).attribute(x, target) -> [B, H, W]``."""

    name = "gradcam_pp"

    def relevance(self, x, targets):
        activation, gradient = self.activations_and_gradients(x, targets)
        g2, g3 = gradient.pow(2), gradient.pow(3)
        denominator = 2 * g2 + (activation * g3).sum(dim=(2, 3), keepdim=True)
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * torch.relu(gradient)).sum(dim=(2, 3), keepdim=True)  # [B, K, 1, 1]
        return torch.relu((weights * activation).sum(dim=1))
