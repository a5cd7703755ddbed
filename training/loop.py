"""The training loop: one function, :func:`fit`, that any recipe (fine-tune,
from scratch, the attention lab) calls with a model factory, datasets and a
:class:`Recipe` (optimiser, schedule, budget), and that returns per-epoch
metrics and the best weights.

The same code runs in one process or in several started by ``torchrun``
(DistributedDataParallel, gloo on CPU, nccl on GPUs): the launcher decides,
the loop does not change. With ``W`` processes each takes ``batch_size / W``
samples of every global batch (a :class:`~torch.utils.data.DistributedSampler`
shards the same seeded permutation) and DDP averages the gradients, so a step
sees the same samples as in one process. Incomplete last batches are dropped
so that both layouts cut the permutation into the same batches. Every process
evaluates the whole validation set (same weights, same numbers; no
communication needed for the metrics).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .errors import TrainingInputError


@dataclass
class Recipe:
    """Optimiser, schedule and budget of a run (saved next to its checkpoint).

    ``optimizer``: ``"sgd"`` (momentum 0.9, the EfficientNetV2 seed) or
    ``"adam"`` (``betas``; the CIFAR Swin seed uses (0.5, 0.999)).
    ``schedule``: ``"cosine"``, the factor ``((1 + cos(pi * e / epochs)) / 2)
    * (1 - lrf) + lrf`` per epoch e; ``"plateau"``, the CIFAR seed's
    ReduceLROnPlateau on the validation loss (factor 0.94, patience 1, min
    1e-6); or ``"constant"``. ``max_steps`` ends the run after that many
    optimiser steps (a budget for quick comparisons), whatever ``epochs``.
    """

    epochs: int = 3
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    lrf: float = 0.01
    seed: int = 0
    max_steps: int | None = None
    eval_batch_size: int = 128

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise TrainingInputError(f"Train for at least 1 epoch, not {self.epochs!r}.")
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not (math.isfinite(self.lr)
                                                                                     and self.lr > 0):
            raise TrainingInputError(f"The learning rate must be a finite number above 0, not {self.lr!r}.")

    def as_dict(self) -> dict:
        return asdict(self)


def cosine_factor(epoch: int, epochs: int, lrf: float) -> float:
    """The seed's learning-rate factor at ``epoch`` (1 at epoch 0, lrf at epoch = epochs)."""
    return ((1 + math.cos(math.pi * epoch / epochs)) / 2) * (1 - lrf) + lrf


@dataclass
class TrainResult:
    """What :func:`fit` returns. ``history``: one dict per epoch with
    ``epoch`` (1-based), ``train_loss``, ``val_loss``, ``val_accuracy``,
    ``lr`` and ``seconds``. ``model`` holds the best epoch's weights (the
    highest validation accuracy, the earliest on ties), unwrapped from DDP,
    in eval mode; ``val_predictions`` / ``val_labels`` are that epoch's."""

    model: nn.Module
    history: list[dict]
    best_epoch: int
    val_accuracy: float
    val_predictions: np.ndarray
    val_labels: np.ndarray
    val_probabilities: np.ndarray
    cancelled: bool
    seconds: float
    steps: int
    world_size: int = 1
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------

def distributed_setup() -> tuple[int, int]:
    """``(rank, world_size)``. Under ``torchrun`` (``WORLD_SIZE`` > 1) the
    process group is started here once: gloo on CPU, nccl with CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _sum_across(values: list[float]) -> list[float]:
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------

def make_optimizer(params: Iterable[nn.Parameter], recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if not params:
        raise TrainingInputError("Nothing to train: every parameter is frozen.")
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, betas=tuple(recipe.betas), weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, betas=tuple(recipe.betas), weight_decay=recipe.weight_decay)
    raise TrainingInputError(f"Unknown optimizer {recipe.optimizer!r}; use sgd, adam or adamw.")


def make_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe):
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: cosine_factor(e, max(recipe.epochs, 1), recipe.lrf))
    if recipe.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", factor=0.94, patience=1, min_lr=1e-6)
    if recipe.schedule == "constant":
        return None
    raise TrainingInputError(f"Unknown schedule {recipe.schedule!r}; use cosine, plateau or constant.")


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 128) -> tuple[float, np.ndarray, np.ndarray]:
    """``(mean loss, probabilities [N, classes], labels [N])`` of ``model`` (eval mode) on ``data``."""
    model.eval()
    losses, probabilities, labels = 0.0, [], []
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        logits = model(x)
        losses += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        probabilities.append(logits.softmax(dim=1))
        labels.append(y)
    probs = torch.cat(probabilities).numpy()
    return losses / max(len(probs), 1), probs, torch.cat(labels).numpy()


@contextlib.contextmanager
def seeded(seed: int):
    """torch's and numpy's global random streams seeded with ``seed`` inside,
    and given back as they were outside (``torch.random.fork_rng`` on the CPU).

    The server's other threads share these streams: a run no longer leaves
    them reset to its seed. torch has no per-thread default generator, and the
    augmentations and drop-path draw from the global one, so while a run is
    inside, a draw by another thread still takes from (and shifts) its stream:
    a run is reproducible when it is the only one drawing, as before.
    """
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)


def fit(model_factory: Callable[[], nn.Module] | nn.Module, train_data: Dataset, val_data: Dataset,
        recipe: Recipe, **kwargs) -> TrainResult:
    """Train a model and keep its best epoch (:func:`_fit`), inside :func:`seeded`
    (``recipe.seed``): the same numbers as a global seed, and the global streams
    are as they were afterwards."""
    with seeded(recipe.seed):
        return _fit(model_factory, train_data, val_data, recipe, **kwargs)


def _fit(model_factory: Callable[[], nn.Module] | nn.Module, train_data: Dataset, val_data: Dataset,
         recipe: Recipe, *, train_mode: Callable[[nn.Module], None] | None = None,
         on_epoch: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
         progress: bool = True, description: str = "train") -> TrainResult:
    """Train a model and keep its best epoch.

    ``model_factory`` is called once, after seeding torch with
    ``recipe.seed`` (so every process builds the same initial weights), or is
    the model itself. Parameters with ``requires_grad=False`` stay frozen.
    ``train_mode(model)`` puts the model in training mode (default
    ``model.train()``; a frozen backbone keeps its BatchNorm statistics by
    leaving those modules in eval mode). Datasets yield ``(tensor, label)``.

    ``on_epoch(metrics)`` is called on the main process after each epoch with
    that epoch's dict; ``should_stop()`` is asked after every step: when it
    says True the run ends there, keeping the best epoch so far (or, when no
    epoch has finished, the weights as they are, evaluated once).
    ``progress`` shows tqdm bars and prints a one-line summary per epoch.
    """
    from tqdm.auto import tqdm

    rank, world = distributed_setup()
    if recipe.batch_size % world:
        raise TrainingInputError(f"The batch size {recipe.batch_size} does not divide among {world} processes; "
                                 "choose a multiple of the process count.")
    per_process = recipe.batch_size // world
    if len(train_data) < recipe.batch_size:
        per_process = max(len(train_data) // world, 1)  # tiny data: one batch of everything
    # (seeded by fit with recipe.seed)
    model = model_factory() if callable(model_factory) and not isinstance(model_factory, nn.Module) \
        else model_factory
    module = model
    trainable = [p for p in model.parameters() if p.requires_grad]
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = make_optimizer(trainable, recipe)
    schedule = make_schedule(optimizer, recipe)
    sampler = DistributedSampler(train_data, num_replicas=world, rank=rank, shuffle=True, seed=recipe.seed,
                                 drop_last=True)
    loader = DataLoader(train_data, batch_size=per_process, sampler=sampler, drop_last=True)
    show = progress and rank == 0
    history, best = [], None
    steps, cancelled, started = 0, False, time.perf_counter()
    for epoch in range(recipe.epochs):
        epoch_start = time.perf_counter()
        sampler.set_epoch(epoch)
        (train_mode or nn.Module.train)(module)
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, seen = 0.0, 0
        bar = tqdm(loader, desc=f"{description} {epoch + 1}/{recipe.epochs}", leave=False, disable=not show)
        for x, y in bar:
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            loss_sum += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            stop = bool(should_stop and should_stop())
            if world > 1 and should_stop is not None:
                stop = _sum_across([float(stop)])[0] > 0  # one process cancelled: all stop together
            if stop or (recipe.max_steps is not None and steps >= recipe.max_steps):
                cancelled = stop
                break
        bar.close()
        loss_sum, seen = _sum_across([loss_sum, float(seen)])
        finished_epoch = seen > 0 and not cancelled
        if not finished_epoch and best is not None:
            break
        val_loss, probs, labels = evaluate(module, val_data, recipe.eval_batch_size)
        predictions = probs.argmax(axis=1)
        accuracy = float((predictions == labels).mean()) if len(labels) else 0.0
        metrics = dict(epoch=epoch + 1, train_loss=loss_sum / max(seen, 1), val_loss=val_loss,
                       val_accuracy=accuracy, lr=lr, seconds=time.perf_counter() - epoch_start,
                       partial=not finished_epoch)
        history.append(metrics)
        if best is None or accuracy > best["accuracy"]:
            best = dict(accuracy=accuracy, epoch=epoch + 1, predictions=predictions, labels=labels, probs=probs,
                        state={k: v.detach().clone() for k, v in module.state_dict().items()})
        if show:
            tqdm.write(f"{description} epoch {epoch + 1}/{recipe.epochs}: train loss {metrics['train_loss']:.4f}, "
                       f"val loss {val_loss:.4f}, val accuracy {accuracy:.2%}, lr {lr:.3g}, "
                       f"{metrics['seconds']:.1f} s" + (" (stopped early)" if not finished_epoch else ""))
        if on_epoch is not None and rank == 0:
            on_epoch(dict(metrics))
        if cancelled or not finished_epoch or (recipe.max_steps is not None and steps >= recipe.max_steps):
            break
        if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule.step(val_loss)
        elif schedule is not None:
            schedule.step()
    module.load_state_dict(best["state"])
    module.eval()
    return TrainResult(model=module, history=history, best_epoch=best["epoch"], val_accuracy=best["accuracy"],
                       val_predictions=best["predictions"], val_labels=best["labels"], val_probabilities=best["probs"],
                       cancelled=cancelled, seconds=time.perf_counter() - started, steps=steps, world_size=world)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float | None]:
    """Recall of each class (None for a class absent from validation)."""
    totals = matrix.sum(axis=1)
    return [float(matrix[i, i] / totals[i]) if totals[i] else None for i in range(len(matrix))]
