"""The three commands as functions: :func:`finetune`, :func:`scratch` and
:func:`predict`. Each checks its input first (one-sentence
:class:`TrainingInputError`), trains with :func:`training.loop.fit`, and
writes the output folder (see :func:`write_run`)."""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset
from torchvision.transforms import v2 as T

import models
from models.transforms import create_transform

from . import data as datasets
from .errors import TrainingInputError
from .export import save_model_folder
from .loop import Recipe, TrainResult, confusion_matrix, fit, is_main_process, per_class_accuracy, seeded

# One training at a time per process: a second one is refused, not queued
# (the CPU is the bottleneck; two runs would each take twice as long).
_BUSY = threading.Lock()
SAMPLE_GRID = 16          # validation images kept for the predicted-vs-true grid
DIGITS_SIZE = 32           # digits upsampled from 8 x 8


@dataclass
class RunResult:
    """What a command produced: the output folder, the metrics written to
    ``metrics.json`` and the loop's :class:`~training.loop.TrainResult`."""

    out: Path
    metrics: dict
    train: TrainResult
    samples: list = field(default_factory=list)   # (PIL image, true class, predicted class)


# --------------------------------------------------------------------------
# Checks shared by the commands
# --------------------------------------------------------------------------

class busy:
    """Held while a training runs; a second one is refused with one sentence."""

    def __enter__(self):
        if not _BUSY.acquire(blocking=False):
            raise TrainingInputError("A training is already running; wait for it to finish or cancel it first.")
        return self

    def __exit__(self, *exc):
        _BUSY.release()


def training_running() -> bool:
    return _BUSY.locked()


def check_output_folder(out: str | os.PathLike) -> Path:
    """``out`` must not hold a trained model already: nothing trained is overwritten."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingInputError(f"{out} already exists and is not empty; choose another output folder so that "
                                 "nothing trained is overwritten.")
    return out


def check_model_name(name: str) -> str:
    """A name for the registry: plain, and not taken by a built-in model, an
    alias, or another trained model."""
    if not models.user.MODEL_NAME.match(name or ""):
        raise TrainingInputError(f"{name!r} is not a usable model name; use letters, digits, '_', '-' or '.' "
                                 "(at most 64, starting with a letter or digit).")
    if name in models.list_models() or name in models.ALIASES:
        raise TrainingInputError(f"The name {name} is taken by a model of the app; choose another name.")
    return name


def base_of(architecture: str) -> tuple[models.ModelSpec, dict]:
    """``(built-in spec, builder overrides)`` behind ``architecture``; a trained
    model's folder names the built-in architecture it was made from."""
    try:
        spec = models.get_spec(architecture)
    except ValueError as error:
        raise TrainingInputError(str(error)) from error
    if spec.weights != models.LOCAL:
        return spec, {}
    app = models.read_model_folder(spec.weights_path)["inside_classifier"]
    return models.get_spec(app["base_architecture"]), dict(app.get("config", {}))


# --------------------------------------------------------------------------
# Models: a new head, a frozen backbone, cached features
# --------------------------------------------------------------------------

def classifier_of(model: nn.Module) -> nn.Linear:
    """The last Linear layer (our Swin's ``head``, our EfficientNet's ``head.classifier``)."""
    return model.head.classifier if isinstance(model.head, nn.Sequential) else model.head


def replace_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """A new head for ``num_classes`` classes, initialised as the builder does."""
    old = classifier_of(model)
    new = nn.Linear(old.in_features, num_classes)
    if isinstance(model.head, nn.Sequential):
        nn.init.normal_(new.weight, 0, 0.01)
        nn.init.zeros_(new.bias)
        model.head.classifier = new
    else:
        nn.init.trunc_normal_(new.weight, std=0.02)
        nn.init.zeros_(new.bias)
        model.head = new
    model.num_classes = num_classes
    return model


def head_modules(model: nn.Module) -> list[nn.Module]:
    """What trains when the backbone is frozen: the classifier and the dropout right before it."""
    if isinstance(model.head, nn.Sequential):
        return [m for key, m in model.head.named_children() if key in ("dropout", "classifier")]
    return [model.head]


def freeze_backbone(model: nn.Module) -> Callable[[nn.Module], None]:
    """Freeze everything but the classifier; returns the ``train_mode`` for
    :func:`~training.loop.fit` that leaves the backbone in eval mode (its
    BatchNorm statistics and dropouts fixed, as a frozen backbone should be)."""
    model.requires_grad_(False)
    classifier_of(model).requires_grad_(True)

    def train_mode(m: nn.Module) -> None:
        m.eval()
        for head in head_modules(m):
            head.train()
    return train_mode


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The features the classifier reads (eval mode: pooled, before dropout)."""
    if isinstance(model.head, nn.Sequential):
        features = model.blocks(model.stem(x))
        for key, module in model.head.named_children():
            if key in ("dropout", "classifier"):
                break
            features = module(features)
        return features
    return model.forward_features(x).mean(dim=(1, 2))


class HeadOnly(nn.Module):
    """The trainable end of a frozen model, over cached features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.layers = nn.Sequential(*head_modules(model))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


@torch.no_grad()
def cached_features(model: nn.Module, data, batch_size: int = 64, progress: bool = True) -> TensorDataset:
    """Every sample's features, computed once (the backbone is frozen and the
    data not augmented, so every epoch would compute the same ones)."""
    from tqdm.auto import tqdm

    model.eval()
    features, labels = [], []
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
    for x, y in tqdm(loader, desc="features", leave=False, disable=not (progress and is_main_process())):
        features.append(penultimate(model, x))
        labels.append(y)
    return TensorDataset(torch.cat(features), torch.cat(labels))


# --------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------

def finetune_train_transform(spec: models.ModelSpec) -> T.Compose:
    """The seed's augmentation: RandomResizedCrop to the input size and a horizontal flip."""
    interpolation = {"bilinear": T.InterpolationMode.BILINEAR}.get(spec.interpolation, T.InterpolationMode.BICUBIC)
    return T.Compose([T.PILToTensor(), T.RandomResizedCrop(spec.input_size[1:], interpolation=interpolation,
                                                           antialias=True),
                      T.RandomHorizontalFlip(), T.ToDtype(torch.float32, scale=True), T.Normalize(spec.mean, spec.std)])


def digits_train_transform(spec: models.ModelSpec) -> T.Compose:
    """Digits: shifts of up to 1/16 of the side (one pixel at 16 x 16) and rotations up to 5
    degrees; no flip (a flipped 2 is no digit). Stronger augmentation
    (10 degrees, 10 % shifts, scaling) kept a 48-wide Swin under 90 % after
    14 epochs here."""
    size = spec.input_size[1:]
    return T.Compose([T.PILToTensor(), T.Resize(size, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                      T.RandomAffine(degrees=5, translate=(1 / 16, 1 / 16)),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(spec.mean, spec.std)])


# --------------------------------------------------------------------------
# Writing a run
# --------------------------------------------------------------------------

def run_metrics(result: TrainResult, classes: Sequence[str], seconds: float, **extra) -> dict:
    matrix = confusion_matrix(result.val_labels, result.val_predictions, len(classes))
    history = result.history
    return {
        "classes": list(classes),
        "epochs": history,
        "train_loss": [h["train_loss"] for h in history],
        "val_loss": [h["val_loss"] for h in history],
        "val_accuracies": [h["val_accuracy"] for h in history],
        "lr": [h["lr"] for h in history],
        "val_accuracy": result.val_accuracy,
        "best_epoch": result.best_epoch,
        "per_class_accuracy": dict(zip(classes, per_class_accuracy(matrix))),
        "confusion_matrix": matrix.tolist(),
        "seconds": seconds,
        "steps": result.steps,
        "cancelled": result.cancelled,
        "processes": result.world_size,
        **extra,
    }


def pick_samples(val_data: datasets.ImageDataset, result: TrainResult, classes: Sequence[str],
                 count: int = SAMPLE_GRID, seed: int = 0) -> list:
    """A seeded choice of validation images with true and predicted class, as
    small copies (a zip's folder is removed after the run)."""
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(val_data), size=min(count, len(val_data)), replace=False).tolist())
    samples = []
    for i in picks:
        image = val_data.image(i)
        image.thumbnail((160, 160))
        samples.append((image, classes[int(result.val_labels[i])], classes[int(result.val_predictions[i])]))
    return samples


def write_run(out: Path, model: nn.Module, result: TrainResult, metrics: dict, samples: list, *, base: str,
              config: dict, spec: models.ModelSpec, description: str, plots: bool = True) -> Path:
    """The output folder, written into a temporary sibling and renamed at the
    end, so a failed write leaves nothing half-made (and never touches an
    existing model). Only the main process writes."""
    if not is_main_process():
        return out
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_model_folder(model, staging, base=base, config=config, classes=metrics["classes"], spec=spec,
                          description=description)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        if plots:
            from . import plots as plotting  # matplotlib only where pictures are wanted
            plotting.write_plots(staging, metrics, samples)
        staging.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
        for path in staging.iterdir():
            path.chmod(0o644)
        check_output_folder(out)
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


# --------------------------------------------------------------------------
# finetune
# --------------------------------------------------------------------------

def finetune(data: str | os.PathLike, out: str | os.PathLike, architecture: str = models.OFFLINE_DEFAULT, *,
             epochs: int = 3, lr: float = 0.01, lrf: float = 0.01, batch_size: int = 32, train_all: bool = False,
             augment: bool = True, val_fraction: float = 0.2, seed: int = 0, description: str = "",
             on_epoch: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
             progress: bool = True, plots: bool = True, tqdm_class=None) -> RunResult:
    """Fine-tune ``architecture`` (pretrained weights) on an ImageFolder
    folder or zip: a new head for its classes, the backbone frozen unless
    ``train_all``, the seed's SGD and cosine schedule. With a frozen backbone
    and ``augment=False`` the features are computed once and only the head
    trains on them."""
    out = check_output_folder(out)
    base, base_config = base_of(architecture)
    spec = models.get_spec(architecture)
    if models.weights_status(spec.name) == "untrained":
        raise TrainingInputError(f"{spec.name} has no pretrained weights to fine-tune; choose a pretrained "
                                 f"architecture such as {models.OFFLINE_DEFAULT}, or train from scratch.")
    with busy():
        started = time.perf_counter()
        with datasets.UnpackedData(data) as unpacked:
            train_set, val_set = datasets.load_image_folder(unpacked.folder)
            if val_set is None:
                train_idx, val_idx = datasets.stratified_split(train_set.labels, val_fraction, seed)
                train_set, val_set = train_set.subset(train_idx), train_set.subset(val_idx)
            classes = train_set.classes
            try:
                pretrained = models.create_model(spec.name, pretrained=True, tqdm_class=tqdm_class)
            except models.WeightsUnavailableError as error:
                raise TrainingInputError(str(error)) from error
            spec = pretrained.spec
            eval_transform = create_transform(spec)
            recipe = Recipe(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=lr, lrf=lrf,
                            schedule="cosine", seed=seed)

            def factory():
                model = replace_classifier(pretrained, len(classes))
                model.spec = spec
                return model

            cache = not train_all and not augment
            if cache:
                with seeded(seed):  # the new head's initial weights; the global streams given back
                    model = factory()
                freeze_backbone(model)
                train_features = cached_features(model, train_set.with_transform(eval_transform), progress=progress)
                val_features = cached_features(model, val_set.with_transform(eval_transform), progress=progress)
                head = HeadOnly(model)
                result = fit(head, train_features, val_features, recipe, on_epoch=on_epoch,
                             should_stop=should_stop, progress=progress, description="finetune")
                result.model = model.eval()  # the head's best weights are the model's own modules
            else:
                holder = {}

                def frozen_factory():
                    model = factory()
                    holder["train_mode"] = None if train_all else freeze_backbone(model)
                    return model
                with seeded(seed):  # the new head's initial weights; the global streams given back
                    model = frozen_factory()
                result = fit(model, train_set.with_transform(finetune_train_transform(spec) if augment
                                                              else eval_transform),
                             val_set.with_transform(eval_transform), recipe, train_mode=holder["train_mode"],
                             on_epoch=on_epoch, should_stop=should_stop, progress=progress, description="finetune")
            seconds = time.perf_counter() - started
            metrics = run_metrics(result, classes, seconds, command="finetune", architecture=spec.name,
                                  base_architecture=base.name, recipe=recipe.as_dict(), train_all=train_all,
                                  augment=augment, cached_features=cache, train_images=len(train_set),
                                  val_images=len(val_set), skipped_files=len(train_set.skipped),
                                  skipped=train_set.skipped[:50])
            samples = pick_samples(val_set, result, classes, seed=seed)
        config = dict(base_config)
        write_run(out, result.model, result, metrics, samples, base=base.name, config=config, spec=spec,
                  description=description or f"fine-tuned from {spec.name} on {len(classes)} classes", plots=plots)
    return RunResult(out, metrics, result, samples)


# --------------------------------------------------------------------------
# scratch
# --------------------------------------------------------------------------

SWIN_OPTIONS = ("embed_dim", "depths", "num_heads", "window_size", "patch_size", "mlp_ratio", "drop_path_rate")


def scratch_spec(architecture: str = "swin_cifar", image_size: int | None = None, dataset: str = "digits",
                 **options) -> tuple[models.ModelSpec, dict]:
    """``(spec, builder overrides)`` of a Swin built from ``architecture``
    with ``options`` (embed_dim, depths, num_heads, window_size, patch_size,
    mlp_ratio, drop_path_rate) replaced, for ``dataset``'s images."""
    base, base_config = base_of(architecture)
    if not base.is_swin:
        raise TrainingInputError(f"{architecture} is not a Swin Transformer; scratch trains Swins "
                                 "(for example swin_cifar).")
    config = {**base_config, **{k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items()
                                if v is not None}}
    full = {**base.config, **config}
    depths, heads = tuple(full["depths"]), tuple(full["num_heads"])
    if len(depths) != len(heads):
        raise TrainingInputError(f"depths {depths} and num_heads {heads} must have one entry per stage.")
    for stage, h in enumerate(heads):
        if (full["embed_dim"] * 2 ** stage) % h:
            raise TrainingInputError(f"Stage {stage} has {full['embed_dim'] * 2 ** stage} channels, which "
                                     f"{h} heads do not divide; change --embed-dim or --num-heads.")
    size = image_size or (DIGITS_SIZE if dataset == "digits" else base.input_size[1])
    if dataset == "digits":  # white on black, grey: centred on 0.5
        stats = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear")
    else:
        stats = dict(mean=models.registry.CIFAR10_MEAN, std=models.registry.CIFAR10_STD, interpolation="bicubic")
    spec = dataclasses.replace(base, input_size=(3, size, size), crop_pct=1.0, crop_mode="squash", **stats)
    return spec, config


def scratch(out: str | os.PathLike, dataset: str = "digits", architecture: str = "swin_cifar", *,
            epochs: int = 10, lr: float = 1e-4, batch_size: int = 64, optimizer: str = "adam",
            betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 0.0, schedule: str = "plateau",
            lrf: float = 0.01, seed: int = 0, val_fraction: float = 0.2, augment: bool = True,
            image_size: int | None = None, data_root: str | os.PathLike = "data", max_steps: int | None = None,
            description: str = "", on_epoch=None, should_stop=None, progress: bool = True, plots: bool = True,
            **swin_options) -> RunResult:
    """Train a Swin from scratch, by default with the CIFAR seed's recipe
    (Adam, betas (0.5, 0.999), lr 1e-4, ReduceLROnPlateau, 10 epochs), on
    the digits (offline; a seeded stratified 80/20 split) or CIFAR-10
    (its test set as validation)."""
    out = check_output_folder(out)
    spec, config = scratch_spec(architecture, image_size, dataset, **{k: swin_options.get(k) for k in SWIN_OPTIONS})
    base, _ = base_of(architecture)
    if dataset == "digits":
        data = datasets.digits_dataset()
        train_idx, val_idx = datasets.stratified_split(data.labels, val_fraction, seed)
        train_set, val_set = data.subset(train_idx), data.subset(val_idx)
        augmentation = digits_train_transform(spec)
    elif dataset == "cifar10":
        train_set, val_set = datasets.cifar10_datasets(data_root)
        augmentation = T.Compose([T.PILToTensor(), T.Resize(spec.input_size[1:], antialias=True),
                                  T.RandomCrop(spec.input_size[1:], padding=spec.input_size[1] // 8),
                                  T.RandomHorizontalFlip(), T.ToDtype(torch.float32, scale=True),
                                  T.Normalize(spec.mean, spec.std)])
    else:
        raise TrainingInputError(f"Unknown dataset {dataset!r}; use digits or cifar10.")
    classes = train_set.classes
    eval_transform = create_transform(spec)
    recipe = Recipe(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, betas=tuple(betas),
                    weight_decay=weight_decay, schedule=schedule, lrf=lrf, seed=seed, max_steps=max_steps)
    full = {**base.config, **config}

    def factory():
        model = spec.builder(num_classes=len(classes), **full)
        model.spec = dataclasses.replace(spec, num_classes=len(classes), label_set="names",
                                         label_names=tuple(classes))
        return model

    with busy():
        started = time.perf_counter()
        result = fit(factory, train_set.with_transform(augmentation if augment else eval_transform),
                     val_set.with_transform(eval_transform), recipe, on_epoch=on_epoch, should_stop=should_stop,
                     progress=progress, description="scratch")
        seconds = time.perf_counter() - started
        parameters = sum(p.numel() for p in result.model.parameters())
        metrics = run_metrics(result, classes, seconds, command="scratch", dataset=dataset,
                              base_architecture=base.name, model_config={k: (list(v) if isinstance(v, tuple) else v)
                                                                         for k, v in config.items()},
                              image_size=spec.input_size[1], parameters=parameters, recipe=recipe.as_dict(),
                              augment=augment, train_images=len(train_set), val_images=len(val_set),
                              torch_threads=torch.get_num_threads())
        samples = pick_samples(val_set, result, classes, seed=seed)
        write_run(out, result.model, result, metrics, samples, base=base.name, config=config, spec=spec,
                  description=description or f"Swin trained from scratch on {dataset} ({parameters:,} parameters)",
                  plots=plots)
    return RunResult(Path(out), metrics, result, samples)


# --------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------

def load_trained(model: str | os.PathLike) -> torch.nn.Module:
    """A registry name (pretrained weights) or a trained model's folder, in eval mode."""
    from safetensors.torch import load_file

    path = Path(model)
    if path.is_dir():
        try:
            spec = models.user.spec_from_folder(path)
        except ValueError as error:
            raise TrainingInputError(str(error)) from error
        net = spec.builder(num_classes=spec.num_classes, **spec.config)
        net.spec = spec
        models.load_timm_state_dict(net, load_file(str(path / "model.safetensors")), str(path))
        return net.eval()
    try:
        if models.weights_status(str(model)) == "untrained":
            raise TrainingInputError(f"{model} has no trained weights; give a trained model's folder or a "
                                     "pretrained architecture.")
        return models.create_model(str(model), pretrained=True)
    except (ValueError, models.WeightsUnavailableError) as error:
        raise TrainingInputError(str(error)) from error


def predict(inputs: str | os.PathLike, model: str | os.PathLike, out_csv: str | os.PathLike, top_k: int = 5,
            batch_size: int = 32, progress: bool = True) -> dict:
    """Classify every image in a folder (any depth) or zip; write a CSV with
    one row per image: ``file``, then ``class_i`` and ``probability_i`` for
    i = 1..k. Unreadable files are skipped and counted. Returns a summary."""
    from tqdm.auto import tqdm

    net = load_trained(model)
    transform = create_transform(net.spec)
    labels = net.spec.labels
    top_k = max(1, min(int(top_k), len(labels)))
    with datasets.UnpackedData(inputs) as unpacked:
        files = sorted(p for p in unpacked.folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        readable = [p for p in files if datasets._readable_image(p)]
        skipped = [str(p.relative_to(unpacked.folder)) for p in files if p not in set(readable)]
        if not readable:
            raise TrainingInputError(f"No readable image in {Path(inputs).name} ({len(skipped)} other files); "
                                     "give a folder or zip of JPEG or PNG images.")
        rows = []
        with torch.no_grad():
            for start in tqdm(range(0, len(readable), batch_size), desc="predict", disable=not progress):
                chunk = readable[start:start + batch_size]
                batch = []
                for p in chunk:
                    with Image.open(p) as img:
                        batch.append(transform(img.convert("RGB")))
                probs = net(torch.stack(batch)).softmax(dim=1)
                values, indices = probs.topk(top_k, dim=1)
                for p, v, i in zip(chunk, values.tolist(), indices.tolist()):
                    row = {"file": str(p.relative_to(unpacked.folder))}
                    for rank, (prob, idx) in enumerate(zip(v, i), start=1):
                        row[f"class_{rank}"], row[f"probability_{rank}"] = labels[idx], f"{prob:.6f}"
                    rows.append(row)
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {"csv": str(out_csv), "images": len(rows), "skipped": len(skipped), "skipped_files": skipped[:50],
            "model": net.spec.name}
