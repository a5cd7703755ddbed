"""Small building blocks shared by the architectures."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Stochastic depth: while training, drop the whole residual branch of a
    sample with probability ``drop_prob`` and scale the survivors by
    ``1 / (1 - drop_prob)``; the identity at inference."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # one draw per sample
    keep = x.new_empty(shape).bernoulli_(keep_prob)
    return x * keep / keep_prob


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


# --------------------------------------------------------------------------
# Fused linear layers for inference on CPU
# --------------------------------------------------------------------------
# oneDNN can apply GELU, or add a residual, inside the matrix product, saving
# a pass over the activations, and its GEMM is faster than the default one for
# these shapes. The same sums in a different order: results
# agree with the unfused ops to ~1e-7. Used only at inference in fp32 on CPU,
# where the op exists; training and other devices take the plain modules.

def _probe_onednn_fusion() -> bool:
    try:
        x, w, b, r = torch.randn(2, 4), torch.randn(3, 4), torch.randn(3), torch.randn(2, 3)
        gelu = torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
        added = torch.ops.mkldnn._linear_pointwise.binary(x, r, w, b, "add")
        linear = nn.functional.linear(x, w, b)
        return bool(torch.allclose(gelu, nn.functional.gelu(linear), atol=1e-5)
                    and torch.allclose(added, linear + r, atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


ONEDNN_FUSION = _probe_onednn_fusion()


def _fusable(module: nn.Module, x: torch.Tensor) -> bool:
    return (ONEDNN_FUSION and not module.training and not torch.is_grad_enabled()
            and x.device.type == "cpu" and x.dtype == torch.float32)


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)``; through oneDNN where it can (faster than the default GEMM
    for the narrow matrices of a vision transformer)."""
    if _fusable(layer, x):
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
    return layer(x)


def linear_gelu(x: torch.Tensor, linear: nn.Linear, dropout: nn.Module) -> torch.Tensor:
    """``dropout(gelu(linear(x)))``, GELU exact (erf)."""
    if _fusable(linear, x):
        return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, "gelu", [], "none")
    return dropout(nn.functional.gelu(linear(x)))


def linear_residual(x: torch.Tensor, linear: nn.Linear, residual: torch.Tensor,
                    branch: Callable[[torch.Tensor], torch.Tensor] = nn.Identity()) -> torch.Tensor:
    """``residual + branch(linear(x))``; ``branch`` holds the dropouts and
    stochastic depth, identities at inference."""
    if _fusable(linear, x):
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, linear.weight, linear.bias, "add")
    return residual + branch(linear(x))
