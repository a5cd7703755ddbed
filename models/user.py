"""Trained models as architectures of the registry: a folder written by
``python -m training`` (``model.safetensors`` in timm's layout + ``config.json``)
becomes a :class:`~models.registry.ModelSpec` with LOCAL weights, offered by
:func:`models.list_models` like any other.

Two places are read when the package is imported: ``assets/models/`` (models
that ship with the app, such as ``swin_digits``) and the user-models folder,
``user_models/`` at the repository root unless the environment variable
``APP_USER_MODELS`` names another one (each sub-folder one model, named after
the folder). A folder that cannot be read is skipped with a warning, so one
broken model never keeps the app from starting.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

from .registry import ASSETS, LOCAL, ModelSpec, get_spec, register_spec, unregister_spec

ROOT = ASSETS.parent
BUNDLED_MODELS = ASSETS / "models"
USER_MODELS_ENV = "APP_USER_MODELS"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def user_models_dir() -> Path:
    """Where trained models are kept: ``$APP_USER_MODELS`` or ``<repo>/user_models``."""
    return Path(os.environ.get(USER_MODELS_ENV) or ROOT / "user_models")


def read_model_folder(folder: str | os.PathLike) -> dict:
    """The folder's config.json (as written by ``training.export``); ValueError
    with one sentence when it is not such a folder."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ValueError(f"{folder} is not a trained model's folder (it needs {CONFIG_FILE} and {WEIGHTS_FILE}).")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["inside_classifier"]["base_architecture"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path} is not a config.json written by `python -m training` ({error!r}).") \
            from error
    return config


def spec_from_folder(folder: str | os.PathLike, name: str | None = None, user: bool = True) -> ModelSpec:
    """The spec of a trained model's folder: the base architecture's builder
    with the folder's arguments, classes and preprocessing."""
    folder = Path(folder).resolve()
    config = read_model_folder(folder)
    app = config["inside_classifier"]
    base = get_spec(app["base_architecture"])
    builder_config = {**base.config, **{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in app.get("config", {}).items()}}
    pretrained = config.get("pretrained_cfg", {})
    classes = tuple(str(c) for c in config.get("label_names") or ())
    num_classes = int(config.get("num_classes", len(classes)))
    if len(classes) != num_classes:
        classes = tuple(f"class {i}" for i in range(num_classes))
    name = name or folder.name
    return ModelSpec(
        name=name, family=base.family, hf_hub_id=None, weights=LOCAL,
        input_size=tuple(pretrained.get("input_size", base.input_size)),
        mean=tuple(pretrained.get("mean", base.mean)), std=tuple(pretrained.get("std", base.std)),
        interpolation=pretrained.get("interpolation", base.interpolation),
        crop_pct=float(pretrained.get("crop_pct", base.crop_pct)),
        crop_mode=pretrained.get("crop_mode", base.crop_mode), num_classes=num_classes, builder=base.builder,
        config=builder_config, label_set="names", label_names=classes,
        description=app.get("description") or f"trained from {base.name} on {num_classes} classes",
        weights_path=str(folder), user=user)


def register_model_folder(folder: str | os.PathLike, name: str | None = None, *, user: bool = True,
                          replace: bool = False) -> str:
    """Offer the trained model in ``folder`` under ``name`` (default: the
    folder's name); returns the name. ValueError when the name is taken by
    another model (or is not a plain name) or the folder is not a model's."""
    name = name or Path(folder).name
    if not MODEL_NAME.match(name):
        raise ValueError(f"{name!r} is not a usable model name; use letters, digits, '_', '-' or '.' "
                         "(at most 64).")
    register_spec(spec_from_folder(folder, name, user), replace=replace)
    return name


def register_user_models(folder: str | os.PathLike | None = None, *, user: bool = True) -> list[str]:
    """Register every model sub-folder of ``folder`` (default
    :func:`user_models_dir`); already registered ones are refreshed. Folders
    that cannot be read, or whose name is taken by a built-in model, are
    skipped with a warning. Returns the names registered."""
    folder = Path(folder) if folder is not None else user_models_dir()
    names = []
    if not folder.is_dir():
        return names
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()):
        try:
            names.append(register_model_folder(sub, user=user, replace=True))
        except ValueError as error:
            warnings.warn(f"Skipped the model folder {sub}: {error}", stacklevel=2)
    return names


def forget_model(name: str) -> None:
    """Stop offering a trained model (its folder is left as it is)."""
    unregister_spec(name)
