"""The "Attention lab" tab: do different implementations of attention change
the model? Pick Swin attention variants (``models.swin_attention``), see
their statistics at initialisation computed live, the recorded comparison
(``docs/attention-lab/``, made by ``python -m training lab``), and run a
short comparison of your own.

The callbacks are plain functions of plain values (tested without a
browser); :func:`build_lab_tab` lays them out inside the caller's
``gr.Tab``.
"""
from __future__ import annotations

import functools
import math
import re
import threading
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import gradio as gr

from demo import arguments, gate
from models.swin_attention import ATTENTION_VARIANTS
from training import recipes
from training.errors import TrainingInputError
from training.lab import (CURVES_PNG, RESULTS_MD, LabConfig, build_model, digits_tensors, init_statistics,
                          train_variant)
from matplotlib import colormaps
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
RECORDED = ROOT / "docs" / "attention-lab"
VARIANTS = list(ATTENTION_VARIANTS)
DEFAULT_VARIANTS = ["fused", "separate", "parameter_randn", "parameter_linear", "primer_shared"]
# Short headers: the table sits in the tab's column (about 650 px at 1024 px wide); EXPLANATION says what they mean.
INIT_HEADERS = ["variant", "logit std", "entropy / max", "max p > 0.99", "q/k grad norm", "loss"]
INIT_BATCH = 128
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 20, 600, 200
LAB = LabConfig()

EXPLANATION = (
    "Each variant is the same small Swin (the lab's: 16 x 16 digits, patch 2, embedding 32, two stages) with "
    "another implementation of window attention: `fused` (one qkv Linear, the checkpoints' layout), `separate` "
    "(three Linears), `heads_first` (the seed's layout: heads before windows, heads concatenated channel-minor), "
    "`parameter_*` (raw `nn.Parameter` matrices initialised with `randn`, Xavier, or nn.Linear's distribution) "
    "and `primer_*` (Primer-EZ's 3 x 3 depthwise convolution on q, k, v inside each window). "
    "**Logit std**: spread of the logits entering the softmax; **entropy / max** (the recorded report's "
    "*row entropy / max*): a row's entropy over its maximum, 1 = uniform attention, 0 = one-hot; "
    "**max p > 0.99** (*rows with max p > 0.99*): the share of saturated softmax rows; **q/k grad norm** "
    "(*q/k gradient norm*): how much gradient reaches the q and k weights on the first step. "
    "See docs/attention-lab.md.")

_stop_lock = threading.Lock()
_stop_requested: dict[str, bool] = {}


@lru_cache(maxsize=1)
def lab_data():
    """The digits as tensors, loaded once (a few seconds)."""
    return digits_tensors(LAB.image_size, LAB.val_fraction)


def _check_variants(variants) -> list[str]:
    chosen = [v for v in (variants or []) if v in ATTENTION_VARIANTS]
    if not chosen:
        raise gate.refuse("Pick at least one attention variant.", "lab")
    return chosen


def init_statistics_rows(variants, seed: int = 0) -> list[list]:
    """One row per variant: :class:`training.lab.InitStatistics` at step 0 on
    ``INIT_BATCH`` training digits, rounded for the table."""
    chosen = _check_variants(variants)
    data = lab_data()
    images, labels = data.train_x[:INIT_BATCH], data.train_y[:INIT_BATCH]
    rows = []
    for variant in chosen:
        s = init_statistics(build_model(LAB, variant, int(seed)), images, labels)
        rows.append([variant, round(s.logit_std, 4), round(s.entropy_fraction, 4),
                     f"{100 * s.saturated_rows:.1f} %", float(f"{s.qk_grad_norm:.3g}"), round(s.loss, 4)])
    return rows


def recorded_comparison(folder: Path = RECORDED) -> tuple[str, str | None]:
    """The recorded report's Markdown (its table and command) and its curves' path."""
    report, curves = folder / RESULTS_MD, folder / CURVES_PNG
    if not report.exists():
        return ("No recorded comparison here yet: run `python -m training lab --out docs/attention-lab` "
                "to make one."), None
    text = report.read_text(encoding="utf-8").replace(f"![curves]({CURVES_PNG})", "")
    return text, (str(curves) if curves.exists() else None)


def under_heading(report: str) -> str:
    """The report placed under the tab's own heading: its title left out, its sections one
    level below that heading (#### instead of ##)."""
    lines = report.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join("##" + line if re.match(r"#{1,3} ", line) else line for line in lines).strip()


def request_stop(session: str) -> str:
    """Ask the live comparison of ``session`` to stop after its current step."""
    with _stop_lock:
        _stop_requested[session] = True
    return "Stopping after the current step..."


def live_comparison(variants, steps, session: str = "", progress=None):
    """Train each chosen variant from seed 0 for ``steps`` steps on the digits;
    yields ``(status Markdown, curves figure or None)`` after each variant.
    :func:`request_stop` for the same ``session`` ends it after the current
    step, keeping what finished.

    It is a training like the Train tab's: one at a time per app
    (:class:`training.recipes.busy`); while another runs it is refused in one sentence."""
    chosen = _check_variants(variants)
    try:
        steps = arguments.whole_number("steps", steps, MIN_STEPS, MAX_STEPS)
    except arguments.ArgumentError as error:
        raise gate.refuse(str(error), "lab") from None
    held = recipes.busy()
    try:
        held.__enter__()
    except TrainingInputError as error:
        raise gate.refuse(str(error), "lab") from None
    try:
        yield from _live_comparison(chosen, steps, session, progress)
    finally:
        held.__exit__(None, None, None)


def _live_comparison(chosen, steps, session, progress):
    with _stop_lock:
        _stop_requested[session] = False
    data = lab_data()
    per_epoch = len(data.train_y) // LAB.batch_size
    config = replace(LAB, variants=tuple(chosen), seeds=1, epochs=math.ceil(steps / per_epoch), max_steps=steps)
    total, done = steps * len(chosen), 0
    runs, lines = [], []

    def should_stop() -> bool:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done / total, desc=f"{len(runs) + 1}/{len(chosen)}: {chosen[len(runs)]}, step "
                                        f"{done - len(runs) * steps}/{steps}")
        with _stop_lock:
            return _stop_requested.get(session, False)

    try:
        for variant in chosen:
            run = train_variant(config, data, variant, seed=0, should_stop=should_stop)
            runs.append(run)
            done = len(runs) * steps
            lines.append(f"- **{variant}**: validation accuracy {100 * run['final_val_accuracy']:.1f} % after "
                         f"{run['steps']} steps ({run['seconds']:.0f} s)" + (" (stopped)" if run["cancelled"] else ""))
            yield "\n".join(lines), live_curves_figure(runs, chosen, per_epoch)
            if run["cancelled"]:
                lines.append("\nStopped; the variants above finished (or stopped) as shown.")
                yield "\n".join(lines), live_curves_figure(runs, chosen, per_epoch)
                return
        lines.append(f"\nOne seed each, {steps} steps: differences of a few points can be seed noise; the "
                     "recorded comparison has 3 seeds per variant.")
        yield "\n".join(lines), live_curves_figure(runs, chosen, per_epoch)
    finally:
        with _stop_lock:
            _stop_requested.pop(session, None)


CHANCE = 10.0  # % of the digits' ten classes


def live_curves_figure(runs, variants, steps_per_epoch: int) -> Figure:
    """Validation accuracy of a short live comparison, one run (seed 0) per variant, against the
    training step it was measured at (after each epoch, and at the last step): each measurement
    a marker, so that a run of one epoch still shows as a point."""
    fig = Figure(figsize=(8.5, 4.2), dpi=100, layout="constrained")
    ax = fig.subplots()
    colors = colormaps["tab10"]
    last = 1
    for i, variant in enumerate(variants):
        for run in (r for r in runs if r["variant"] == variant):
            steps = [min((k + 1) * steps_per_epoch, run["steps"]) for k in range(len(run["history"]))]
            accuracy = [100 * h["val_accuracy"] for h in run["history"]]
            if steps:
                ax.plot(steps, accuracy, "o-", color=colors(i % 10), label=variant, markersize=6)
                last = max(last, steps[-1])
    ax.axhline(CHANCE, color="#6b7280", lw=1, ls=":", label="chance (10 %)")
    ax.set(xlabel="training step", ylabel="validation accuracy (%)", ylim=(0, 100), xlim=(0, last * 1.05),
           title="Digits, small Swin from scratch: validation accuracy, one run (seed 0) per variant, "
                 "measured after each epoch")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def guard_lab_arguments(variants, steps) -> None:
    """Check the lab events' arguments at the boundary (:func:`demo.gate.guard`): the events are
    private but reachable through the queue by their index."""
    gate.guard(variants, functools.partial(arguments.choices, "variants", allowed=VARIANTS, default=[]), "variants")
    gate.guard(steps, functools.partial(arguments.whole_number, "steps", low=MIN_STEPS, high=MAX_STEPS,
                                        default=DEFAULT_STEPS), "steps")


def build_lab_tab() -> None:
    """The tab's components and events, inside the caller's ``gr.Tab`` (and ``gr.Blocks``)."""
    gr.Markdown("## Attention lab: do different implementations of attention change the model?\n" + EXPLANATION)
    variants = gr.CheckboxGroup(VARIANTS, value=DEFAULT_VARIANTS, label="Attention variants", elem_id="lab-variants")
    with gr.Row():
        init_button = gr.Button("Statistics at initialisation (seconds)", elem_id="lab-init")
    init_table = gr.Dataframe(headers=INIT_HEADERS, label="At step 0, 128 digits", interactive=False,
                              elem_id="lab-init-table")
    gr.Markdown("### The recorded comparison (3 seeds per variant)")
    report, curves = recorded_comparison()
    # Full width: beside the curves, the report's six-column tables broke words and numbers.
    gr.Markdown(under_heading(report), elem_id="lab-recorded", elem_classes=["result-table", "nowrap-cells"])
    gr.Image(curves, label="Validation accuracy by epoch (recorded)", show_label=False, interactive=False,
             format="png", height=380, elem_id="lab-recorded-curves")
    gr.Markdown("### A short comparison of your own (seed 0, on this server's CPU)")
    with gr.Row():
        steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=DEFAULT_STEPS, step=10, label="Training steps per variant",
                          elem_id="lab-steps", scale=3)
        start = gr.Button("Train", variant="primary", elem_id="lab-start", scale=1)
        stop = gr.Button("Cancel", elem_id="lab-cancel", scale=1)
    status = gr.Markdown(elem_id="lab-status")
    plot = gr.Plot(label="Validation accuracy by training step", elem_id="lab-curves")

    guard_lab_arguments(variants, steps)
    init_button.click(init_statistics_rows, [variants], [init_table], concurrency_id="lab", concurrency_limit=1,
                      api_visibility="private")

    def live(chosen, n, request: gr.Request, progress=gr.Progress()):
        yield from live_comparison(chosen, n, session=getattr(request, "session_hash", "") or "", progress=progress)

    def cancel(request: gr.Request):
        return request_stop(getattr(request, "session_hash", "") or "")

    start.click(live, [variants, steps], [status, plot], concurrency_id="lab", concurrency_limit=1,
                api_visibility="private")
    stop.click(cancel, None, [status], concurrency_limit=None, api_visibility="private")


__all__ = ["build_lab_tab", "init_statistics_rows", "live_comparison", "recorded_comparison", "request_stop"]
