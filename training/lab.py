"""The attention lab: do different implementations of attention change the
model? Each Swin attention variant (``models.swin_attention``) is measured
at initialisation on a batch of digits and then trained from scratch on the
digits with the training package's loop (:func:`training.fit`), same small
Swin, same budget, several seeds; the report folder holds the table
(Markdown and CSV), the curves (PNG) and the initialisation statistics.

``python -m training lab --out DIR`` runs it (``--help`` for the options).
No Gradio here; matplotlib only where the curves are drawn.
"""
from __future__ import annotations

import csv
import json
import math
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import models
from models.swin import MASK_VALUE, WindowAttention
from models.swin_attention import ATTENTION_VARIANTS, capture_attention_logits, query_key_gradients

from .errors import TrainingInputError

VARIANTS = tuple(ATTENTION_VARIANTS)
RESULTS_CSV, RESULTS_MD, CURVES_PNG = "results.csv", "results.md", "curves.png"
INIT_CSV, RUNS_JSON, CONFIG_JSON = "init_statistics.csv", "runs.json", "config.json"


@dataclass
class LabConfig:
    """One comparison: which variants, how many seeds, the small Swin they
    all share and the budget every run gets (``epochs`` over the digits'
    training split, ``batch_size`` images a step)."""

    variants: tuple[str, ...] = VARIANTS
    seeds: int = 3
    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    image_size: int = 16
    architecture: str = "swin_cifar"
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2)
    num_heads: tuple[int, ...] = (2, 4)
    window_size: int = 4
    patch_size: int = 2
    mlp_ratio: float = 2.0
    init_batch: int = 256
    val_fraction: float = 0.2
    max_steps: int | None = None

    def check(self) -> None:
        unknown = [v for v in self.variants if v not in ATTENTION_VARIANTS]
        if unknown:
            raise TrainingInputError(f"Unknown attention variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}.")
        if not self.variants:
            raise TrainingInputError("Choose at least one attention variant to compare.")
        if self.seeds < 1 or self.epochs < 1:
            raise TrainingInputError("Seeds and epochs must be at least 1.")
        if len(self.depths) != len(self.num_heads):
            raise TrainingInputError(f"depths {self.depths} and num_heads {self.num_heads} need one entry per stage.")
        for stage, heads in enumerate(self.num_heads):
            if (self.embed_dim * 2 ** stage) % heads:
                raise TrainingInputError(f"Stage {stage} has {self.embed_dim * 2 ** stage} channels, which {heads} "
                                         "heads do not divide; change the embedding width or the heads.")

    def swin_options(self) -> dict:
        return dict(embed_dim=self.embed_dim, depths=tuple(self.depths), num_heads=tuple(self.num_heads),
                    window_size=self.window_size, patch_size=self.patch_size, mlp_ratio=self.mlp_ratio,
                    drop_path_rate=0.0)


# --------------------------------------------------------------------------
# Data and model
# --------------------------------------------------------------------------

@dataclass
class DigitsTensors:
    """The digits as ready tensors ``[N, 3, S, S]`` (normalised to [-1, 1],
    upsampled once): every run reads the same numbers, and no per-image
    transform costs time in a comparison of attention."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list[str]

    def train_set(self):
        return torch.utils.data.TensorDataset(self.train_x, self.train_y)

    def val_set(self):
        return torch.utils.data.TensorDataset(self.val_x, self.val_y)


def digits_tensors(image_size: int = 16, val_fraction: float = 0.2, split_seed: int = 0) -> DigitsTensors:
    """The training package's digits and its seeded stratified split, as tensors."""
    from .data import digits_dataset, stratified_split

    data = digits_dataset()
    pixels = np.stack([np.asarray(img.convert("L"), dtype=np.float32) for img in data.samples]) / 255.0
    x = torch.from_numpy(pixels)[:, None]  # [N, 1, 8, 8]
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    x = ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()  # white on black, grey: the scratch recipe's mean / std
    y = torch.tensor(data.labels)
    train_idx, val_idx = stratified_split(data.labels, val_fraction, split_seed)
    return DigitsTensors(x[train_idx], y[train_idx], x[val_idx], y[val_idx], list(data.classes))


def build_model(config: LabConfig, attention: str, seed: int) -> nn.Module:
    """The lab's small Swin with window attention ``attention``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return models.create_model(config.architecture, num_classes=10, attention=attention, **config.swin_options())


# --------------------------------------------------------------------------
# Initialisation statistics
# --------------------------------------------------------------------------

@dataclass
class InitStatistics:
    """What a variant's attention looks like before any training step.

    ``logit_std``: standard deviation (population) of the logits entering
    the softmax (``q k / sqrt(d)`` plus the relative position bias), over
    every pair of tokens allowed to attend, in every block, head, window
    and image. ``entropy_fraction``: mean over attention rows of the row's
    entropy divided by its maximum, ``log`` of the number of keys the row
    may attend (``log N`` in a window without shift mask); 1 is uniform
    attention, 0 one-hot. ``saturated_rows``: fraction of the same rows
    (more than one allowed key) whose largest probability exceeds 0.99.
    Both use the softmax over the allowed keys only. ``qk_grad_norm``: L2 norm, over all blocks, of
    the gradient of the batch's mean cross-entropy reaching the q and k
    projection weights. ``loss``: that cross-entropy.
    """

    logit_std: float
    entropy_fraction: float
    saturated_rows: float
    qk_grad_norm: float
    loss: float


def init_statistics(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> InitStatistics:
    """:class:`InitStatistics` of ``model`` (eval mode: no dropout) on one batch."""
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad(), capture_attention_logits(model) as records:
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
    values, entropy_fractions, saturated = [], [], []
    for scores, bias in records:  # each [B, nW, heads, N, N]
        logits = scores + bias
        allowed = (bias > MASK_VALUE / 2).expand_as(logits)
        values.append(logits[allowed].double())
        # Over the allowed keys only: the mask's shift (MASK_VALUE) does not
        # mask when the logits are as large as it (randn: std ~48), and a
        # probability on a masked key would count in both statistics.
        p = logits.double().masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        entropy = -torch.special.xlogy(p, p).sum(dim=-1)
        keys = allowed.sum(dim=-1).double()
        real = keys > 1  # a row with one key (or none: padding) has no choice to make
        entropy_fractions.append((entropy[real] / keys[real].log()))
        saturated.append(p.amax(dim=-1)[real] > 0.99)
    pooled = torch.cat(values)
    grads = [g for m in model.modules() if isinstance(m, WindowAttention) for g in query_key_gradients(m)]
    grad_norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
    model.zero_grad(set_to_none=True)
    return InitStatistics(
        logit_std=float(pooled.std(correction=0)),
        entropy_fraction=float(torch.cat(entropy_fractions).mean()),
        saturated_rows=float(torch.cat(saturated).double().mean()),
        qk_grad_norm=grad_norm,
        loss=float(loss.detach()))


def init_table(config: LabConfig, data: DigitsTensors, seeds: Sequence[int] = (0,)) -> list[dict]:
    """:func:`init_statistics` of every variant of ``config`` (mean over
    ``seeds``) on the first ``config.init_batch`` training images."""
    images, labels = data.train_x[:config.init_batch], data.train_y[:config.init_batch]
    rows = []
    for variant in config.variants:
        stats = [asdict(init_statistics(build_model(config, variant, seed), images, labels)) for seed in seeds]
        rows.append({"variant": variant, **{k: statistics.fmean(s[k] for s in stats) for k in stats[0]}})
    return rows


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------

def train_variant(config: LabConfig, data: DigitsTensors, variant: str, seed: int, *,
                  should_stop: Callable[[], bool] | None = None, on_epoch: Callable[[dict], None] | None = None,
                  progress: bool = False) -> dict:
    """One run of ``variant`` from ``seed`` with the training package's
    loop (AdamW, cosine schedule): its per-epoch history and the final and
    best validation accuracy."""
    from .loop import Recipe, fit

    recipe = Recipe(epochs=config.epochs, batch_size=config.batch_size, optimizer="adamw", lr=config.lr,
                    weight_decay=config.weight_decay, schedule="cosine", lrf=0.01, seed=seed,
                    max_steps=config.max_steps)
    result = fit(lambda: build_model(config, variant, seed), data.train_set(), data.val_set(), recipe,
                 should_stop=should_stop, on_epoch=on_epoch, progress=progress,
                 description=f"{variant} seed {seed}")
    history = [{k: h[k] for k in ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds")}
               for h in result.history]
    return dict(variant=variant, seed=seed, history=history, final_val_accuracy=history[-1]["val_accuracy"],
                best_val_accuracy=result.val_accuracy, steps=result.steps, seconds=result.seconds,
                cancelled=result.cancelled)


def summarise(runs: Sequence[dict], variants: Sequence[str]) -> list[dict]:
    """Per variant: mean and standard deviation (sample, n - 1) over seeds
    of the final validation accuracy (after the whole budget) and of the best."""
    rows = []
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        final = [r["final_val_accuracy"] for r in mine]
        best = [r["best_val_accuracy"] for r in mine]
        spread = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)  # noqa: E731
        rows.append(dict(variant=variant, seeds=len(mine), final_mean=statistics.fmean(final),
                         final_std=spread(final), best_mean=statistics.fmean(best), best_std=spread(best),
                         final_per_seed=final, seconds_mean=statistics.fmean(r["seconds"] for r in mine)))
    return rows


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------

def results_markdown(summary: Sequence[dict], init_rows: Sequence[dict], config: LabConfig, command: str,
                     seconds: float) -> str:
    lines = [
        "# Attention lab: results",
        "",
        f"Command: `{command}`",
        "",
        f"Each variant: the same small Swin ({_model_words(config)}) trained from scratch on the digits "
        f"({config.image_size} x {config.image_size}), {config.epochs} epochs of batch {config.batch_size} "
        f"(AdamW, lr {config.lr:g}, weight decay {config.weight_decay:g}, cosine), seeds 0 to {config.seeds - 1}. "
        f"Total {seconds / 60:.1f} minutes.",
        "",
        "## Validation accuracy (%), mean +- std over seeds",
        "",
        "| variant | seeds | after the budget | best epoch | per seed (after the budget) | s per run |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary:
        per_seed = ", ".join(f"{100 * a:.1f}" for a in row["final_per_seed"])
        lines.append(f"| {row['variant']} | {row['seeds']} | {100 * row['final_mean']:.1f} +- "
                     f"{100 * row['final_std']:.1f} | {100 * row['best_mean']:.1f} +- {100 * row['best_std']:.1f} | "
                     f"{per_seed} | {row['seconds_mean']:.0f} |")
    lines += ["", f"![curves]({CURVES_PNG})", "", init_markdown(init_rows, config.init_batch)]
    return "\n".join(lines) + "\n"


def init_markdown(init_rows: Sequence[dict], batch: int) -> str:
    lines = [
        f"## At initialisation (step 0, {batch} training digits)",
        "",
        "| variant | logit std | row entropy / max | rows with max p > 0.99 | q/k gradient norm | loss |",
        "|---|---|---|---|---|---|",
    ]
    for row in init_rows:
        lines.append(f"| {row['variant']} | {row['logit_std']:.3g} | {row['entropy_fraction']:.3f} | "
                     f"{100 * row['saturated_rows']:.1f} % | {row['qk_grad_norm']:.3g} | {row['loss']:.3f} |")
    return "\n".join(lines) + "\n"


def _model_words(config: LabConfig) -> str:
    return (f"patch {config.patch_size}, embedding {config.embed_dim}, depths {tuple(config.depths)}, "
            f"heads {tuple(config.num_heads)}, window {config.window_size}, MLP ratio {config.mlp_ratio:g}")


def write_report(out: Path, runs: Sequence[dict], init_rows: Sequence[dict], config: LabConfig, command: str,
                 seconds: float) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs, config.variants)
    with open(out / RESULTS_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["variant", "seeds", "final_val_accuracy_mean", "final_val_accuracy_std",
                    "best_val_accuracy_mean", "best_val_accuracy_std", "final_val_accuracy_per_seed",
                    "seconds_per_run"])
        for r in summary:
            w.writerow([r["variant"], r["seeds"], f"{r['final_mean']:.4f}", f"{r['final_std']:.4f}",
                        f"{r['best_mean']:.4f}", f"{r['best_std']:.4f}",
                        " ".join(f"{a:.4f}" for a in r["final_per_seed"]), f"{r['seconds_mean']:.1f}"])
    with open(out / INIT_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(init_rows[0]))
        w.writeheader()
        w.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in init_rows)
    (out / RESULTS_MD).write_text(results_markdown(summary, init_rows, config, command, seconds), encoding="utf-8")
    from training.plots import lab_curves_figure  # matplotlib only when a report is written

    fig = lab_curves_figure(runs, config.variants)
    fig.savefig(out / CURVES_PNG)
    (out / RUNS_JSON).write_text(json.dumps(list(runs), indent=1), encoding="utf-8")
    (out / CONFIG_JSON).write_text(json.dumps(dict(
        command=command, config=asdict(config), seconds=round(seconds, 1), torch=torch.__version__,
        threads=torch.get_num_threads(), python=platform.python_version()), indent=1), encoding="utf-8")
    return [out / n for n in (RESULTS_MD, RESULTS_CSV, CURVES_PNG, INIT_CSV, RUNS_JSON, CONFIG_JSON)]


def run_lab(config: LabConfig, out: str | Path, *, command: str = "", progress: bool = True,
            log: Callable[[str], None] = print) -> list[dict]:
    """Init statistics, then every variant x seed trained; the report written to ``out``."""
    config.check()
    out = Path(out)
    started = time.perf_counter()
    data = digits_tensors(config.image_size, config.val_fraction)
    init_rows = init_table(config, data)
    runs = []
    total = len(config.variants) * config.seeds
    for seed in range(config.seeds):  # seeds outermost: a stopped run still has every variant at least once
        for variant in config.variants:
            run = train_variant(config, data, variant, seed, progress=progress)
            runs.append(run)
            log(f"[{len(runs)}/{total}] {variant} seed {seed}: validation accuracy "
                f"{run['final_val_accuracy']:.2%} after {run['steps']} steps, {run['seconds']:.1f} s")
    write_report(out, runs, init_rows, config, command, time.perf_counter() - started)
    return runs


# --------------------------------------------------------------------------
# Command line: python -m training lab ...
# --------------------------------------------------------------------------

def add_arguments(p) -> None:
    """The ``lab`` sub-command's options, on an ``argparse`` parser."""
    defaults = LabConfig()
    p.add_argument("--out", required=True, help="report folder (results.md / .csv, curves.png, init_statistics.csv)")
    p.add_argument("--variants", default="all",
                   help=f"comma-separated, or 'all': {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=defaults.seeds, help="runs per variant, seeds 0, 1, ...")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="the budget of every run")
    p.add_argument("--max-steps", type=int, help="stop every run after this many steps (a tiny check)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--image-size", type=int, default=defaults.image_size, help="digits upsampled from 8 to this")
    p.add_argument("--embed-dim", type=int, default=defaults.embed_dim)
    p.add_argument("--depths", default=",".join(map(str, defaults.depths)), help="blocks per stage, e.g. 2,2")
    p.add_argument("--num-heads", default=",".join(map(str, defaults.num_heads)), help="heads per stage, e.g. 2,4")
    p.add_argument("--window-size", type=int, default=defaults.window_size)
    p.add_argument("--init-batch", type=int, default=defaults.init_batch, help="digits for the init statistics")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own)")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(",", " ").split())
    except ValueError:
        raise TrainingInputError(f"{text!r} is not a list of whole numbers such as 2,2.") from None


def config_from_args(args) -> LabConfig:
    variants = VARIANTS if args.variants.strip() == "all" else tuple(
        v.strip() for v in args.variants.split(",") if v.strip())
    return LabConfig(variants=variants, seeds=args.seeds, epochs=args.epochs, max_steps=args.max_steps,
                     batch_size=args.batch_size, lr=args.lr, image_size=args.image_size, embed_dim=args.embed_dim,
                     depths=_ints(args.depths), num_heads=_ints(args.num_heads), window_size=args.window_size,
                     init_batch=args.init_batch)


def run_from_args(args, argv: Sequence[str] | None = None) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    words = list(sys.argv[1:] if argv is None else argv)
    command = "python -m training " + " ".join(shlex.quote(w) for w in words)
    started = time.perf_counter()
    run_lab(config, args.out, command=command, progress=False)
    print(f"Wrote {args.out}: {len(config.variants)} variants x {config.seeds} seeds in "
          f"{(time.perf_counter() - started) / 60:.1f} minutes; see {Path(args.out) / RESULTS_MD}.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.lab ...`` (the same as ``python -m training lab ...``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m training lab", description=__doc__)
    add_arguments(p)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_from_args(p.parse_args(argv), ["lab", *argv])
    except TrainingInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
