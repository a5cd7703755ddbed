"""The output folder of a run, in the layout timm's loader reads:
``model.safetensors`` (timm's key names) and ``config.json``
(``architecture``, ``num_classes``, ``label_names``, ``pretrained_cfg``,
``model_args``), so that ``timm.create_model("local-dir:FOLDER",
pretrained=True)`` builds the same network and the folder can be pushed to
the Hub as it is. One more key, ``inside_classifier``, tells this app's model
package which of its architectures to build (timm ignores it).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

import models
from models import efficientnet

WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"

# The timm architecture of each of our EfficientNets (the bundled Lite0 is
# timm's TensorFlow-padded Lite0).
TIMM_EFFICIENTNET = {"efficientnet_lite0": "tf_efficientnet_lite0", "tf_efficientnetv2_s": "tf_efficientnetv2_s",
                     "tf_efficientnetv2_m": "tf_efficientnetv2_m", "tf_efficientnetv2_l": "tf_efficientnetv2_l"}
# Any Swin configuration is timm's Swin-T entry point with its arguments replaced.
TIMM_SWIN_ENTRY = "swin_tiny_patch4_window7_224"
SWIN_ARGS = ("patch_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio")


def swin_to_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ours -> timm's Swin layout; the inverse of ``models.swin.convert_timm_state_dict``
    (patch merging moves from the end of stage i to the start of stage i + 1,
    ``head`` becomes ``head.fc``)."""
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) + 1)
        elif parts[0] == "head":
            parts = ["head", "fc"] + parts[1:]
        out[".".join(parts)] = value
    return out


def efficientnet_to_timm(state_dict: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """Ours -> timm's EfficientNet layout; the inverse of
    ``models.efficientnet.convert_timm_state_dict``."""
    layout = list(model.block_layout())
    top = {ours: theirs for theirs, ours in efficientnet._TIMM_TOP_NAMES.items()}
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        new_key = key
        if parts[0] == "blocks":
            stage, index, kind = layout[int(parts[1])]
            inverse = {ours: theirs for theirs, ours in efficientnet._TIMM_BLOCK_NAMES[kind].items()}
            for length in (2, 1):  # "project_conv.conv" before "se"
                ours = ".".join(parts[2:2 + length])
                if ours in inverse:
                    new_key = ".".join(["blocks", str(stage), str(index), inverse[ours]] + parts[2 + length:])
                    break
        else:
            for length in (3, 2):
                ours = ".".join(parts[:length])
                if ours in top:
                    new_key = ".".join([top[ours]] + parts[length:])
                    break
        out[new_key] = value
    return out


def timm_config(model, base: str, config: dict, classes: list[str], spec) -> dict:
    """config.json for ``model`` built from our architecture ``base`` with
    builder arguments ``config`` (only those that differ from ``base``'s)."""
    base_spec = models.get_spec(base)
    full = {**base_spec.config, **config}
    pretrained_cfg = dict(input_size=list(spec.input_size), mean=list(spec.mean), std=list(spec.std),
                          interpolation=spec.interpolation, crop_pct=spec.crop_pct, crop_mode=spec.crop_mode,
                          num_classes=len(classes))
    if base_spec.is_swin:
        architecture = TIMM_SWIN_ENTRY
        model_args = {k: (list(full[k]) if isinstance(full[k], (tuple, list)) else full[k])
                      for k in SWIN_ARGS if k in full}
        model_args["img_size"] = list(spec.input_size[1:])
        pretrained_cfg.update(classifier="head.fc", first_conv="patch_embed.proj", fixed_input_size=True)
        num_features = model.num_features
    else:
        architecture, model_args = TIMM_EFFICIENTNET[base_spec.name], {}
        pretrained_cfg.update(classifier="classifier", first_conv="conv_stem")
        num_features = model.head.classifier.in_features
    return {
        "architecture": architecture,
        "num_classes": len(classes),
        "num_features": num_features,
        "label_names": list(classes),
        "pretrained_cfg": pretrained_cfg,
        "model_args": model_args,
        "inside_classifier": {"base_architecture": base_spec.name,
                              "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}},
    }


def save_model_folder(model, out: str | os.PathLike, *, base: str, config: dict, classes: list[str], spec,
                      description: str = "") -> Path:
    """Write ``model.safetensors`` (timm layout) and ``config.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    state = swin_to_timm(state) if models.get_spec(base).is_swin else efficientnet_to_timm(state, model)
    cfg = timm_config(model, base, config, classes, spec)
    cfg["inside_classifier"]["description"] = description
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return out
