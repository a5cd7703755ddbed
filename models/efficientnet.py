"""EfficientNetV2 (S / M / L) and EfficientNet-Lite0, built from table rows as
in the seed: ``repeat, kernel, stride, expansion, in_c, out_c, operator,
se_ratio``, operator 0 = Fused-MBConv, 1 = MBConv.

The pretrained weights are TensorFlow ports, so convolutions use TensorFlow's
"same" padding (asymmetric for stride 2: the extra row / column goes bottom /
right) and BatchNorm uses eps 1e-3; with PyTorch's symmetric padding the
numbers would drift from the reference.
"""
from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DropPath

FUSED_MBCONV, MBCONV = 0, 1


class StageRow(NamedTuple):
    """One row of a stage table: ``repeat`` blocks of one kind."""
    repeat: int
    kernel: int
    stride: int       # of the stage's first block; the others have stride 1
    expansion: int    # hidden channels = expansion x input channels
    in_c: int
    out_c: int
    operator: int     # FUSED_MBCONV or MBCONV
    se_ratio: float   # squeeze-excitation width / input channels; 0: none

#                repeat, kernel, stride, expansion, in_c, out_c, operator, se_ratio
EFFICIENTNETV2_S = [[2, 3, 1, 1, 24, 24, 0, 0],
                    [4, 3, 2, 4, 24, 48, 0, 0],
                    [4, 3, 2, 4, 48, 64, 0, 0],
                    [6, 3, 2, 4, 64, 128, 1, 0.25],
                    [9, 3, 1, 6, 128, 160, 1, 0.25],
                    [15, 3, 2, 6, 160, 256, 1, 0.25]]

EFFICIENTNETV2_M = [[3, 3, 1, 1, 24, 24, 0, 0],
                    [5, 3, 2, 4, 24, 48, 0, 0],
                    [5, 3, 2, 4, 48, 80, 0, 0],
                    [7, 3, 2, 4, 80, 160, 1, 0.25],
                    [14, 3, 1, 6, 160, 176, 1, 0.25],
                    [18, 3, 2, 6, 176, 304, 1, 0.25],
                    [5, 3, 1, 6, 304, 512, 1, 0.25]]

EFFICIENTNETV2_L = [[4, 3, 1, 1, 32, 32, 0, 0],
                    [7, 3, 2, 4, 32, 64, 0, 0],
                    [7, 3, 2, 4, 64, 96, 0, 0],
                    [10, 3, 2, 4, 96, 192, 1, 0.25],
                    [19, 3, 1, 6, 192, 224, 1, 0.25],
                    [25, 3, 2, 6, 224, 384, 1, 0.25],
                    [7, 3, 1, 6, 384, 640, 1, 0.25]]

# EfficientNet-B0's layout without squeeze-excitation (Lite: no SE, ReLU6,
# stem and head not scaled).
EFFICIENTNET_LITE0 = [[1, 3, 1, 1, 32, 16, 1, 0],
                      [2, 3, 2, 6, 16, 24, 1, 0],
                      [2, 5, 2, 6, 24, 40, 1, 0],
                      [3, 3, 2, 6, 40, 80, 1, 0],
                      [3, 5, 1, 6, 80, 112, 1, 0],
                      [4, 5, 2, 6, 112, 192, 1, 0],
                      [1, 3, 1, 6, 192, 320, 1, 0]]


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding: output side = ceil(input / stride),
    the odd padding pixel at the bottom / right. Computed per input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        pad_w = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def conv2d_same(in_c: int, out_c: int, kernel_size: int, stride: int = 1, groups: int = 1,
                bias: bool = False) -> nn.Conv2d:
    """TensorFlow "same" convolution. At stride 1 with an odd kernel the padding
    is symmetric and fixed, so a plain Conv2d does it without the per-call pad."""
    if stride == 1:
        return nn.Conv2d(in_c, out_c, kernel_size, 1, (kernel_size - 1) // 2, groups=groups, bias=bias)
    return Conv2dSame(in_c, out_c, kernel_size, stride, 0, groups=groups, bias=bias)


_FOLD_CHUNK_ELEMENTS = 2**16  # float64 scratch of at most 512 KiB per step (see fold_batchnorm)


def _channels_last(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` with channels-last strides, copied only where its order in
    memory changes (k x k convolutions, 2.6 % of V2-L's weights; Module.to
    would copy every weight). A 1 x 1 or depthwise kernel is in that order
    already; only the strides of its size-1 dimensions are set, as a copy
    would set them (the convolutions pick their kernels by the strides)."""
    if not weight.is_contiguous(memory_format=torch.channels_last):
        return weight.contiguous(memory_format=torch.channels_last)
    strides = torch.empty(weight.shape, memory_format=torch.channels_last, device="meta").stride()
    return weight.as_strided(weight.shape, strides)


class ConvBNAct(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
                 activation_layer: Callable[..., nn.Module] | None = nn.SiLU):
        super().__init__()
        self.conv = conv2d_same(in_planes, out_planes, kernel_size, stride, groups)
        self.bn = norm_layer(out_planes)
        # In place: BatchNorm's output is fresh, so no copy is needed for the activation.
        self.act = activation_layer(inplace=True) if activation_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fold_batchnorm(self) -> None:
        """Fold the BatchNorm's running statistics into the convolution, for
        inference: ``conv(x, w * s) + (beta - mean * s)`` with ``s = gamma /
        sqrt(var + eps)`` is what conv then BatchNorm compute, with one pass
        over the activations less (computed in float64, then rounded once)."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = bn.bias.double() - bn.running_mean.double() * scale
        if conv.bias is not None:
            bias += conv.bias.double() * scale
        # In place, a few output channels at a time: a whole new weight per layer, or a
        # whole float64 copy, leaves holes in the heap that later (larger) layers do not
        # fit. Loading EfficientNetV2-L then took 550-920 MB more at its peak (up to twice
        # the model) in the model-loading test of tests/test_reliability.py.
        weight = conv.weight
        rows = max(1, _FOLD_CHUNK_ELEMENTS * weight.shape[0] // weight.numel())
        with torch.inference_mode() if weight.is_inference() else contextlib.nullcontext():  # built under it
            for part, part_scale in zip(weight.split(rows), scale.view(-1, 1, 1, 1).split(rows)):
                part.copy_(part.double().mul_(part_scale))  # rounded once, here
        weight.requires_grad_(False)
        conv.bias = nn.Parameter(bias.to(weight.dtype), requires_grad=False)
        self.bn = nn.Identity()


class SqueezeExcitation(nn.Module):
    """Channel gate: global average -> reduce to ``input_c * se_ratio`` ->
    activation -> expand -> sigmoid -> scale. The squeeze width follows the
    block's *input* channels, as in EfficientNet."""

    def __init__(self, input_c: int, expand_c: int, se_ratio: float = 0.25,
                 activation_layer: Callable[..., nn.Module] = nn.SiLU):
        super().__init__()
        squeeze_c = int(input_c * se_ratio)
        self.conv_reduce = nn.Conv2d(expand_c, squeeze_c, 1)
        self.act1 = activation_layer(inplace=True)
        self.conv_expand = nn.Conv2d(squeeze_c, expand_c, 1)
        self.act2 = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)  # [B, C, 1, 1]
        scale = self.act2(self.conv_expand(self.act1(self.conv_reduce(scale))))
        # In place at inference: the input is the depthwise conv's fresh output.
        return x.mul_(scale) if not torch.is_grad_enabled() else x * scale


class MBConv(nn.Module):
    """Inverted residual: 1 x 1 expand -> k x k depthwise -> SE -> 1 x 1 project.
    With expansion 1 (EfficientNet's first block) there is no expand conv."""

    def __init__(self, kernel_size: int, input_c: int, out_c: int, expand_ratio: int, stride: int,
                 se_ratio: float, drop_rate: float, norm_layer: Callable[..., nn.Module],
                 activation_layer: Callable[..., nn.Module] = nn.SiLU):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("Stride must be 1 or 2.")
        self.has_shortcut = stride == 1 and input_c == out_c
        expand_c = input_c * expand_ratio
        self.expand_conv = (ConvBNAct(input_c, expand_c, 1, norm_layer=norm_layer, activation_layer=activation_layer)
                            if expand_ratio != 1 else nn.Identity())
        self.dwconv = ConvBNAct(expand_c, expand_c, kernel_size, stride, groups=expand_c, norm_layer=norm_layer,
                                activation_layer=activation_layer)
        self.se = (SqueezeExcitation(input_c, expand_c, se_ratio, activation_layer)
                   if se_ratio > 0 else nn.Identity())
        self.project_conv = ConvBNAct(expand_c, out_c, 1, norm_layer=norm_layer, activation_layer=None)
        self.dropout = DropPath(drop_rate) if self.has_shortcut and drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.project_conv(self.se(self.dwconv(self.expand_conv(x))))
        if self.has_shortcut:
            result = self.dropout(result)
            result = result.add_(x) if not torch.is_grad_enabled() else result + x
        return result


class FusedMBConv(nn.Module):
    """Fused-MBConv: the expand 1 x 1 and the depthwise k x k become one
    regular k x k conv (faster on accelerators in early stages). With
    expansion 1 it is a single conv-BN-act."""

    def __init__(self, kernel_size: int, input_c: int, out_c: int, expand_ratio: int, stride: int,
                 se_ratio: float, drop_rate: float, norm_layer: Callable[..., nn.Module],
                 activation_layer: Callable[..., nn.Module] = nn.SiLU):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("Stride must be 1 or 2.")
        if se_ratio:
            raise ValueError("Fused-MBConv has no squeeze-excitation in EfficientNetV2.")
        self.has_shortcut = stride == 1 and input_c == out_c
        self.has_expansion = expand_ratio != 1
        expanded_c = input_c * expand_ratio
        if self.has_expansion:
            self.expand_conv = ConvBNAct(input_c, expanded_c, kernel_size, stride, norm_layer=norm_layer,
                                         activation_layer=activation_layer)
            self.project_conv = ConvBNAct(expanded_c, out_c, 1, norm_layer=norm_layer, activation_layer=None)
        else:
            self.project_conv = ConvBNAct(input_c, out_c, kernel_size, stride, norm_layer=norm_layer,
                                          activation_layer=activation_layer)
        self.dropout = DropPath(drop_rate) if self.has_shortcut and drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.expand_conv(x) if self.has_expansion else x
        result = self.project_conv(result)
        if self.has_shortcut:
            result = self.dropout(result)
            result = result.add_(x) if not torch.is_grad_enabled() else result + x
        return result


class EfficientNet(nn.Module):
    """Stem conv -> table of (Fused-)MBConv blocks -> 1 x 1 head conv -> pool -> classifier."""

    def __init__(self, model_cnf: Sequence[Sequence[float]], num_classes: int = 1000, num_features: int = 1280,
                 dropout_rate: float = 0.2, drop_connect_rate: float = 0.2,
                 activation_layer: Callable[..., nn.Module] = nn.SiLU, bn_eps: float = 1e-3):
        super().__init__()
        for cnf in model_cnf:
            if len(cnf) != len(StageRow._fields):
                raise ValueError(f"Each table row has {len(StageRow._fields)} fields: "
                                 f"{', '.join(StageRow._fields)}.")
        self.model_cnf = [StageRow(*row) for row in model_cnf]
        model_cnf = self.model_cnf
        self.num_classes = num_classes
        self.prepared_for_inference = False  # see prepare_for_inference
        norm_layer = lambda c: nn.BatchNorm2d(c, eps=bn_eps)  # noqa: E731
        self.stem = ConvBNAct(3, model_cnf[0].in_c, 3, 2, norm_layer=norm_layer, activation_layer=activation_layer)

        total_blocks = sum(int(row.repeat) for row in model_cnf)
        blocks, block_id = [], 0
        for row in model_cnf:
            op = FusedMBConv if row.operator == FUSED_MBCONV else MBConv
            for i in range(int(row.repeat)):
                blocks.append(op(kernel_size=row.kernel, input_c=row.in_c if i == 0 else row.out_c, out_c=row.out_c,
                                 expand_ratio=row.expansion, stride=row.stride if i == 0 else 1,
                                 se_ratio=row.se_ratio,
                                 drop_rate=drop_connect_rate * block_id / total_blocks, norm_layer=norm_layer,
                                 activation_layer=activation_layer))
                block_id += 1
        self.blocks = nn.Sequential(*blocks)

        head = OrderedDict()
        head["project_conv"] = ConvBNAct(model_cnf[-1].out_c, num_features, 1, norm_layer=norm_layer,
                                         activation_layer=activation_layer)
        head["avgpool"] = nn.AdaptiveAvgPool2d(1)
        head["flatten"] = nn.Flatten()
        if dropout_rate > 0:
            head["dropout"] = nn.Dropout(dropout_rate)
        head["classifier"] = nn.Linear(num_features, num_classes)
        self.head = nn.Sequential(head)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def block_layout(self):
        """``(stage, index_in_stage, block_kind)`` for each flat block, kind one of
        ``"fused"``, ``"fused_expand"``, ``"mbconv"``, ``"mbconv_expand"``."""
        for stage, row in enumerate(self.model_cnf):
            kind = "fused" if row.operator == FUSED_MBCONV else "mbconv"
            if row.expansion != 1:
                kind += "_expand"
            for i in range(int(row.repeat)):
                yield stage, i, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prepared_for_inference:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.blocks(self.stem(x)))

    def prepare_for_inference(self) -> "EfficientNet":
        """In place, for inference on CPU; returns the model, in eval mode.

        Every BatchNorm is folded into the convolution before it, and the
        weights and activations are laid out channels-last (NHWC), as oneDNN's
        convolutions run fastest. The logits round differently (the folded
        weights are rounded products, and channels-last kernels add in
        another order): tests/test_parity.py holds them as close to the
        exact (float64) logits as timm's own fp32 ones are (within 3 x
        timm's error, or 1e-4 where that is larger), and on the bundled
        Lite0 and the example photos the probabilities agree with the
        unprepared model's within 1e-5 (tests/test_models.py). The
        BatchNorms are gone afterwards: the model can no longer be trained,
        nor take a checkpoint. The weights are overwritten where they are:
        a ``state_dict()`` taken before, or any other view of them, sees the
        folded values."""
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fold_batchnorm()
        for parameter in self.parameters():
            if parameter.dim() == 4:
                parameter.data = _channels_last(parameter.data)
        self.prepared_for_inference = True
        return self.eval()

    def train(self, mode: bool = True) -> "EfficientNet":
        if mode and self.prepared_for_inference:
            raise RuntimeError("This EfficientNet was prepared for inference (its BatchNorms are folded into the "
                               "convolutions) and cannot be trained; create a new one with models.create_model.")
        return super().train(mode)


# --------------------------------------------------------------------------
# Checkpoint conversion, one function per source layout
# --------------------------------------------------------------------------

# timm block module names -> ours, by block kind.
_TIMM_BLOCK_NAMES = {
    "fused": {"conv": "project_conv.conv", "bn1": "project_conv.bn"},
    "fused_expand": {"conv_exp": "expand_conv.conv", "bn1": "expand_conv.bn",
                     "conv_pwl": "project_conv.conv", "bn2": "project_conv.bn"},
    "mbconv": {"conv_dw": "dwconv.conv", "bn1": "dwconv.bn", "se": "se",
               "conv_pw": "project_conv.conv", "bn2": "project_conv.bn"},
    "mbconv_expand": {"conv_pw": "expand_conv.conv", "bn1": "expand_conv.bn", "conv_dw": "dwconv.conv",
                      "bn2": "dwconv.bn", "se": "se", "conv_pwl": "project_conv.conv", "bn3": "project_conv.bn"},
}
_TIMM_TOP_NAMES = {"conv_stem": "stem.conv", "bn1": "stem.bn", "conv_head": "head.project_conv.conv",
                   "bn2": "head.project_conv.bn", "classifier": "head.classifier"}


def convert_timm_state_dict(state_dict: dict[str, torch.Tensor], model: EfficientNet) -> dict[str, torch.Tensor]:
    """timm's EfficientNet layout (``blocks.{stage}.{i}.conv_pw`` ...) -> ours
    (``blocks.{flat}.expand_conv.conv`` ...). Unknown keys pass through
    unchanged so that strict loading names them."""
    flat = {(stage, i): (n, kind) for n, (stage, i, kind) in enumerate(model.block_layout())}
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        new_key = key
        if parts[0] == "blocks" and len(parts) > 3 and (int(parts[1]), int(parts[2])) in flat:
            n, kind = flat[(int(parts[1]), int(parts[2]))]
            name = _TIMM_BLOCK_NAMES[kind].get(parts[3])
            if name is not None:
                new_key = ".".join(["blocks", str(n), name] + parts[4:])
        elif parts[0] in _TIMM_TOP_NAMES:
            new_key = ".".join([_TIMM_TOP_NAMES[parts[0]]] + parts[1:])
        out[new_key] = value
    return out


_EFFICIENTNET_PYTORCH_BLOCK_NAMES = {
    "_expand_conv": "expand_conv.conv", "_bn0": "expand_conv.bn", "_depthwise_conv": "dwconv.conv",
    "_bn1": "dwconv.bn", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand",
    "_project_conv": "project_conv.conv", "_bn2": "project_conv.bn",
}
_EFFICIENTNET_PYTORCH_TOP_NAMES = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.project_conv.conv",
                                   "_bn1": "head.project_conv.bn", "_fc": "head.classifier"}


def convert_efficientnet_pytorch_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``efficientnet_pytorch`` layout (``_blocks.N._depthwise_conv`` ...),
    which the bundled EfficientNet-Lite0 weights use -> ours. Blocks are
    already numbered flat there."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        new_key = key
        if parts[0] == "_blocks" and len(parts) > 2 and parts[2] in _EFFICIENTNET_PYTORCH_BLOCK_NAMES:
            new_key = ".".join(["blocks", parts[1], _EFFICIENTNET_PYTORCH_BLOCK_NAMES[parts[2]]] + parts[3:])
        elif parts[0] in _EFFICIENTNET_PYTORCH_TOP_NAMES:
            new_key = ".".join([_EFFICIENTNET_PYTORCH_TOP_NAMES[parts[0]]] + parts[1:])
        out[new_key] = value
    return out
