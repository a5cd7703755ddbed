"""The pictures of a run, as PNG files: learning curves, confusion matrix and
a grid of validation images with predicted vs true class; and the attention
lab's accuracy curves. matplotlib lives
here only; the loop and the recipes' training code never import it."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CURVES, CONFUSION, SAMPLES = "curves.png", "confusion_matrix.png", "samples.png"
# The run's figures are drawn to be shown at about their own size (the app's Train tab shows them full
# width): at most this many pixels wide, and no text smaller than SMALLEST_FONT points.
MAX_WIDTH_PX, SMALLEST_FONT = 1200, 10


def curves_figure(metrics: dict) -> Figure:
    """Loss (train and validation), validation accuracy and learning rate per epoch."""
    epochs = [e["epoch"] for e in metrics["epochs"]]
    fig = Figure(figsize=(11, 3.4), dpi=100, layout="constrained")
    loss, accuracy, lr = fig.subplots(1, 3)
    loss.plot(epochs, metrics["train_loss"], "o-", label="train")
    loss.plot(epochs, metrics["val_loss"], "o-", label="validation")
    loss.set(title="Loss (cross-entropy)", xlabel="epoch")
    loss.legend()
    accuracy.plot(epochs, [100 * a for a in metrics["val_accuracies"]], "o-", color="tab:green")
    accuracy.set(title=f"Validation accuracy (best {100 * metrics['val_accuracy']:.1f} %)", xlabel="epoch",
                 ylabel="%")
    lr.plot(epochs, metrics["lr"], "o-", color="tab:purple")
    lr.set(title="Learning rate", xlabel="epoch")
    for ax in (loss, accuracy, lr):
        ax.grid(alpha=0.3)
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 12 else epochs[::max(len(epochs) // 10, 1)])
    return fig


def confusion_figure(metrics: dict) -> Figure:
    """Rows: true class; columns: predicted; each cell its count."""
    matrix = np.asarray(metrics["confusion_matrix"])
    classes = metrics["classes"]
    n = len(classes)
    side = min(2.5 + 0.45 * n, MAX_WIDTH_PX / 100 - 1)
    fig = Figure(figsize=(side + 1, side), dpi=100, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix (validation, best epoch {metrics['best_epoch']})")
    ax.set_xticklabels(classes, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticklabels(classes)
    if n <= 30:
        top = matrix.max() or 1
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=SMALLEST_FONT if n > 12 else 12,
                    color="white" if count > top / 2 else "black")
    return fig


def samples_figure(samples: list) -> Figure:
    """Validation images titled "predicted (true)", green when right, red when wrong."""
    count = max(len(samples), 1)
    columns = min(count, 8)
    rows = int(np.ceil(count / columns))
    fig = Figure(figsize=(1.45 * columns, 1.8 * rows + 0.4), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (image, true, predicted) in zip(axes, samples):
        ax.imshow(np.asarray(image), interpolation="nearest")
        ax.set_title(f"{predicted}\n(true {true})" if predicted != true else f"{predicted}", fontsize=SMALLEST_FONT + 1,
                     color="tab:green" if predicted == true else "tab:red")
    fig.suptitle("Validation images: predicted (true) — green right, red wrong", fontsize=12)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_plots(folder: str | Path, metrics: dict, samples: list) -> list[Path]:
    folder = Path(folder)
    written = []
    for name, fig in ((CURVES, curves_figure(metrics)), (CONFUSION, confusion_figure(metrics)),
                      (SAMPLES, samples_figure(samples))):
        path = folder / name
        path.write_bytes(png_bytes(fig))
        written.append(path)
    return written


def lab_curves_figure(runs: Sequence[dict], variants: Sequence[str]) -> Figure:
    """Validation accuracy by epoch: each variant's mean over seeds, a band of
    +- one standard deviation, and its seeds as thin lines."""
    fig = Figure(figsize=(8.5, 4.8), dpi=100, layout="constrained")
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab10"]
    for i, variant in enumerate(variants):
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        length = min(len(r["history"]) for r in mine)
        curves = np.array([[100 * h["val_accuracy"] for h in r["history"][:length]] for r in mine])
        epochs = np.arange(1, length + 1)
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        ax.plot(epochs, mean, "o-", color=colors(i), label=variant, markersize=3)
        ax.fill_between(epochs, mean - std, mean + std, color=colors(i), alpha=0.15)
        for curve in curves:
            ax.plot(epochs, curve, color=colors(i), alpha=0.25, linewidth=0.7)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", ylim=(0, 100),
           title="Digits, small Swin from scratch: validation accuracy (mean over seeds, band = +- 1 std)")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig
