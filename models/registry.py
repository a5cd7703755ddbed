"""Every architecture the app offers, as data: a :class:`ModelSpec` per name
(weights, preprocessing, labels) and a builder."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from torch import nn

from . import efficientnet, swin

ASSETS = Path(__file__).resolve().parent.parent / "assets"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# Where weights come from. LOCAL: a trained model's folder (model.safetensors
# in timm's layout + config.json), see models/user.py.
HUB, BUNDLED, NONE, LOCAL = "hub", "bundled", "none", "local"


@lru_cache(maxsize=None)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index-aligned with the logits."""
    labels = tuple((ASSETS / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines())
    if len(labels) != 1000:
        raise RuntimeError(f"{ASSETS / 'imagenet_classes.txt'} should list 1000 classes, found {len(labels)}.")
    return labels


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str                      # "swin" or "efficientnet"
    hf_hub_id: str | None            # "timm/<name>.<tag>", or None when the weights are not on the Hub
    weights: str                     # HUB, BUNDLED or NONE
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    crop_mode: str
    num_classes: int
    builder: Callable[..., nn.Module] = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    label_set: str = "imagenet"      # "imagenet", "cifar10", "none" (classes numbered) or "names"
    description: str = ""
    label_names: tuple[str, ...] = ()  # the classes when label_set is "names" (a trained model's)
    weights_path: str | None = None    # the folder of a LOCAL model
    user: bool = False                 # a model trained by the user (under the user-models folder)

    @property
    def labels(self) -> tuple[str, ...]:
        if self.label_set == "imagenet":
            return imagenet_labels()
        if self.label_set == "cifar10":
            return CIFAR10_LABELS
        if self.label_set == "names":
            return self.label_names
        return tuple(f"class {i}" for i in range(self.num_classes))

    @property
    def is_swin(self) -> bool:
        return self.family == "swin"

    def with_pretrained_cfg(self, cfg: dict[str, Any]) -> "ModelSpec":
        """This spec with the preprocessing a checkpoint's ``pretrained_cfg`` declares."""
        updates = {}
        for key in ("input_size", "mean", "std"):
            if cfg.get(key) is not None:
                updates[key] = tuple(cfg[key])
        for key in ("interpolation", "crop_mode"):
            if cfg.get(key):
                updates[key] = str(cfg[key])
        if cfg.get("crop_pct") is not None:
            updates["crop_pct"] = float(cfg["crop_pct"])
        return dataclasses.replace(self, **updates)


def _swin(name, tag, embed_dim, depths, num_heads, window_size, size, crop_pct, description):
    return ModelSpec(
        name=name, family="swin", hf_hub_id=f"timm/{name}.{tag}", weights=HUB, input_size=(3, size, size),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic", crop_pct=crop_pct, crop_mode="center",
        num_classes=1000, builder=swin.SwinTransformer,
        config=dict(patch_size=4, embed_dim=embed_dim, depths=depths, num_heads=num_heads, window_size=window_size),
        description=description)


def _efficientnetv2(name, table, size, crop_mode, dropout, description):
    return ModelSpec(
        name=name, family="efficientnet", hf_hub_id=f"timm/{name}.in21k_ft_in1k", weights=HUB,
        input_size=(3, size, size), mean=INCEPTION_MEAN, std=INCEPTION_STD, interpolation="bicubic", crop_pct=1.0,
        crop_mode=crop_mode, num_classes=1000, builder=efficientnet.EfficientNet,
        config=dict(model_cnf=table, dropout_rate=dropout, activation_layer=nn.SiLU, bn_eps=1e-3),
        description=description)


_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    _swin("swin_tiny_patch4_window7_224", "ms_in1k", 96, (2, 2, 6, 2), (3, 6, 12, 24), 7, 224, 0.9,
          "Swin-T, 28M parameters, ImageNet-1k"),
    _swin("swin_small_patch4_window7_224", "ms_in22k_ft_in1k", 96, (2, 2, 18, 2), (3, 6, 12, 24), 7, 224, 0.9,
          "Swin-S, 50M parameters, ImageNet-22k then 1k"),
    _swin("swin_base_patch4_window7_224", "ms_in22k_ft_in1k", 128, (2, 2, 18, 2), (4, 8, 16, 32), 7, 224, 0.9,
          "Swin-B, 88M parameters, ImageNet-22k then 1k"),
    _swin("swin_base_patch4_window12_384", "ms_in22k_ft_in1k", 128, (2, 2, 18, 2), (4, 8, 16, 32), 12, 384, 1.0,
          "Swin-B at 384 x 384, window 12"),
    _swin("swin_large_patch4_window7_224", "ms_in22k_ft_in1k", 192, (2, 2, 18, 2), (6, 12, 24, 48), 7, 224, 0.9,
          "Swin-L, 197M parameters, ImageNet-22k then 1k"),
    _swin("swin_large_patch4_window12_384", "ms_in22k_ft_in1k", 192, (2, 2, 18, 2), (6, 12, 24, 48), 12, 384, 1.0,
          "Swin-L at 384 x 384, window 12"),
    ModelSpec(
        name="swin_cifar", family="swin", hf_hub_id=None, weights=NONE, input_size=(3, 32, 32),
        mean=CIFAR10_MEAN, std=CIFAR10_STD, interpolation="bicubic", crop_pct=1.0, crop_mode="squash",
        num_classes=10, builder=swin.SwinTransformer, label_set="cifar10",
        # The seed's CIFAR-10 variant: Swin-T without its last stage, patch 2, MLP ratio 1.
        config=dict(patch_size=2, embed_dim=192, depths=(2, 6, 2), num_heads=(3, 6, 12), window_size=7,
                    mlp_ratio=1.0),
        description="The seed's CIFAR-10 Swin (32 x 32, patch 2); no pretrained weights"),
    _efficientnetv2("tf_efficientnetv2_s", efficientnet.EFFICIENTNETV2_S, 300, "center", 0.2,
                    "EfficientNetV2-S, ImageNet-21k then 1k"),
    _efficientnetv2("tf_efficientnetv2_m", efficientnet.EFFICIENTNETV2_M, 384, "squash", 0.3,
                    "EfficientNetV2-M, ImageNet-21k then 1k"),
    _efficientnetv2("tf_efficientnetv2_l", efficientnet.EFFICIENTNETV2_L, 384, "squash", 0.4,
                    "EfficientNetV2-L, ImageNet-21k then 1k"),
    ModelSpec(
        name="efficientnet_lite0", family="efficientnet", hf_hub_id=None, weights=BUNDLED, input_size=(3, 224, 224),
        mean=INCEPTION_MEAN, std=INCEPTION_STD, interpolation="bicubic", crop_pct=0.875, crop_mode="center",
        num_classes=1000, builder=efficientnet.EfficientNet,
        config=dict(model_cnf=efficientnet.EFFICIENTNET_LITE0, dropout_rate=0.2, activation_layer=nn.ReLU6,
                    bn_eps=1e-3),
        description="EfficientNet-Lite0, ImageNet-1k; weights ship with the app (works offline)"),
]}

ALIASES = {
    "swin_t": "swin_tiny_patch4_window7_224", "swin_s": "swin_small_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224", "swin_b_384": "swin_base_patch4_window12_384",
    "swin_l": "swin_large_patch4_window7_224", "swin_l_384": "swin_large_patch4_window12_384",
    "efficientnetv2_s": "tf_efficientnetv2_s", "efficientnetv2_m": "tf_efficientnetv2_m",
    "efficientnetv2_l": "tf_efficientnetv2_l", "lite0": "efficientnet_lite0",
}

OFFLINE_DEFAULT = "efficientnet_lite0"


def register_spec(spec: ModelSpec, replace: bool = False) -> None:
    """Offer one more architecture (a trained model's folder: models/user.py).
    A name that is taken, or an alias, is refused unless ``replace`` and the
    taken name is itself a LOCAL model; a user's model (``spec.user``) may
    replace only another user's model, never a built-in or bundled one."""
    taken = _SPECS.get(spec.name)
    if spec.user and taken is not None and not taken.user:
        raise ValueError(f"The name {spec.name!r} is taken by a model that comes with the app; rename the "
                         "folder.")
    if spec.name in ALIASES or (taken is not None and not (replace and taken.weights == LOCAL)):
        raise ValueError(f"The name {spec.name!r} is taken by another model; choose another name.")
    _SPECS[spec.name] = spec


def unregister_spec(name: str) -> None:
    """Stop offering a LOCAL model (built-in architectures stay)."""
    if name in _SPECS and _SPECS[name].weights == LOCAL:
        del _SPECS[name]


def list_models() -> list[str]:
    """Every architecture the app offers, by its canonical (timm) name."""
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name`` (a canonical name or an alias such as ``swin_t``)."""
    key = ALIASES.get(name, name)
    if key not in _SPECS:
        raise ValueError(f"Unknown model {name!r}; choose one of: {', '.join(list_models())}.")
    return _SPECS[key]
