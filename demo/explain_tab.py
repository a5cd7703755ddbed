"""The "Classify & explain" tab's explanation part, and the public ``/explain``
endpoint. Callbacks are plain functions (:class:`ExplainCallbacks`), tested
without a browser; :func:`build_explain_section` lays the components out
inside the tab and wires them.
"""
from __future__ import annotations

from functools import partial

import gradio as gr
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import explain
import models
from demo import arguments, caveats, explaining, gate, outputs, panels
from demo.frames import figure_to_array
from explain import pictures

DEFAULT_METHOD = "gradcam"
DEFAULT_OPACITY = 0.5
CHOOSE_A_CLASS = ("Click a class in the list above to see which pixels made the model say it, or **Explain** "
                  "for the top-1 class.")
KEEP_MAP_FILES = 64  # raw-map files kept on disk for download; older ones are removed


def user_error(message: str) -> gr.Error:
    return gate.refuse(message, "explain")


def target_argument(value):
    """A target as the API takes it: a class name or "top1" (a string), a
    class index (a whole number), or None (top1); checked against the
    model's classes later."""
    if value is None or value == "":  # the hidden API textbox sends "" when the client leaves it out
        return "top1"
    if isinstance(value, str) and len(value) <= 200:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return arguments.whole_number("target", value, 0, 10**6)
    raise arguments.ArgumentError(f"target must be a class name, a class index or \"top1\", "
                                  f"not {str(value)[:40]!r}.")


def method_argument(value) -> str:
    """A method as the API takes it: one of explain.METHODS; None or "" (what the hidden API
    textbox sends when the client leaves it out) is the default."""
    if value is None or value == "":
        return DEFAULT_METHOD
    return arguments.choice("method", value, explain.METHODS)


def curves_figure(result: explaining.Explanation) -> np.ndarray:
    """Deletion and insertion curves of the map (solid) and of the random map
    (dashed), probability against the share of pixels, as an RGB array."""
    f = result.faithfulness
    fig = Figure(figsize=(6.4, 2.6), dpi=100)
    FigureCanvasAgg(fig)
    for axis, kind, better in zip(fig.subplots(1, 2), ("deletion", "insertion"), ("lower", "higher")):
        ours, random = getattr(f.curves, kind), getattr(f.random, kind)
        axis.plot(f.curves.fractions, ours, color="#c2410c", lw=2,
                  label=f"{result.method}  AUC {getattr(f.curves, kind + '_auc'):.3f}")
        axis.plot(f.random.fractions, random, color="#6b7280", lw=1.5, ls="--",
                  label=f"random  AUC {getattr(f.random, kind + '_auc'):.3f}")
        axis.set_title(f"{kind.capitalize()} ({better} area is better)", fontsize=9)
        axis.set_xlabel(f"share of pixels {'removed' if kind == 'deletion' else 'revealed'}", fontsize=8)
        axis.set_ylim(0, max(1e-3, float(np.max([ours, random]))) * 1.05)
        axis.tick_params(labelsize=7)
        axis.legend(fontsize=7, loc="upper right" if kind == "deletion" else "lower right")
    fig.axes[0].set_ylabel(f"p({result.class_name})", fontsize=8)
    fig.tight_layout()
    return figure_to_array(fig)


def scores_markdown(result: explaining.Explanation) -> str:
    weights = "" if result.pretrained else " · **untrained weights**: this map explains a random model"
    lines = [f"**{result.class_name}** (p = {result.probability:.3f}) · {result.method} · "
             f"{result.model_name}{weights} · {result.seconds:.1f} s"]
    if result.faithfulness is not None:
        f = result.faithfulness
        s = f.scores()
        lines.append("| | this map | random map | verdict |\n|---|---|---|---|\n"
                     f"| deletion AUC (lower is better) | {s['deletion_auc']:.3f} | {s['random_deletion_auc']:.3f} | "
                     f"{caveats.verdict(f, 'deletion')} |\n"
                     f"| insertion AUC (higher is better) | {s['insertion_auc']:.3f} | "
                     f"{s['random_insertion_auc']:.3f} | {caveats.verdict(f, 'insertion')} |")
        note = caveats.flat_note(f, result.class_name)
        if note:
            lines.append(note)
    return "\n\n".join(lines)


class MapFiles:
    """Raw maps written as .npy for download, the last :data:`KEEP_MAP_FILES` kept."""

    def __init__(self):
        self.files = outputs.RecentFiles("explain-maps-", keep=KEEP_MAP_FILES)

    def write(self, result: explaining.Explanation) -> str:
        path = self.files.new_path(f"{result.model_name}.{result.method}.npy")
        np.save(path, result.saliency.astype(np.float32))
        return str(path)


class ExplainCallbacks:
    """``open_image(path) -> PIL`` is the app's input gate (it raises gr.Error)."""

    def __init__(self, service, open_image):
        self.service = service
        self.open_image = open_image
        self.map_files = MapFiles()

    def _explain(self, image, architecture, method, target, with_faithfulness=True) -> explaining.Explanation:
        try:
            explaining.check_request(architecture, method)
        except explaining.ExplanationError as error:
            raise user_error(str(error)) from error
        picture = self.open_image(image)
        try:
            return explaining.explain_image(self.service, picture, architecture, method, target, with_faithfulness)
        except explaining.ExplanationError as error:
            raise user_error(str(error)) from error
        except models.WeightsUnavailableError as error:
            raise user_error(f"{error} Choose {models.OFFLINE_DEFAULT}, which works offline, "
                             "or try again later.") from error

    # ------------------------------------------------------------------ public API
    def explain_api(self, image, architecture, method=DEFAULT_METHOD, target="top1"):
        """Explain one class of one image: the map over the model input as an
        overlay, the raw map (.npy, float32 [H, W], min 0, max 1), and a JSON
        summary with the class, its probability, the deletion / insertion
        AUCs of the map and of a random map, and the seconds it took.
        ``target``: a class name, a class index, or "top1"."""
        result = self._explain(image, architecture, method_argument(method), target_argument(target))
        return outputs.png_file(result.overlay(DEFAULT_OPACITY)), self.map_files.write(result), result.summary()

    # ------------------------------------------------------------------ page
    def explain_ui(self, image, architecture, method, selected, opacity):
        """(overlay, raw map, curves, scores, .npy file, summary, state) for the page."""
        if image is None or image == "":
            return (None, None, None, "Upload an image or pick an example first.", None, None, None)
        result = self._explain(image, architecture, method, selected or "top1")
        return (panels.enlarged(result.overlay(opacity)), panels.enlarged(pictures.colorize(result.saliency)),
                curves_figure(result),
                scores_markdown(result), self.map_files.write(result), result.summary(),
                (result.model_input, result.saliency))

    @staticmethod
    def reoverlay(state, opacity):
        """The overlay at a new opacity, from the last map (no model runs)."""
        if not state:
            return gr.update()
        model_input, saliency = state
        return panels.enlarged(pictures.overlay(model_input, saliency, opacity))

    @staticmethod
    def on_class_select(evt: gr.SelectData):
        """A click on a class of the top-k list: that class is explained next."""
        value = evt.value
        if isinstance(value, dict):
            value = value.get("label", value.get("value"))
        return str(value), f"Explaining **{value}**"

    @staticmethod
    def on_image():
        return "top1", CHOOSE_A_CLASS

    @staticmethod
    def on_architecture(architecture, method):
        """The methods this architecture is offered, a note on those held back, and
        whether the (closed) accordion holding that note shows."""
        offered, held_back = explaining.offered_methods(architecture)
        note = held_back_markdown(held_back)
        return (gr.update(choices=[(m, m) for m in offered], value=method if method in offered else DEFAULT_METHOD),
                note, gr.update(visible=bool(note)))


HELD_BACK_TITLE = "Methods not offered for this model, and why"


def held_back_markdown(held_back: dict[str, str]) -> str:
    """One paragraph per method held back (empty when none is)."""
    return "\n\n".join(held_back.values())


def method_help() -> str:
    return "\n".join(f"- `{m}`: {explain.DESCRIPTIONS[m].split(': ', 1)[1]}" for m in explain.METHODS)


def build_explain_section(callbacks: ExplainCallbacks, image, architecture, label, default_architecture: str,
                          model_events: dict, quick: dict) -> dict:
    """The explanation controls and outputs, inside the current tab. Returns its components by name."""
    offered, held_back = explaining.offered_methods(default_architecture)
    gr.Markdown("### Why this class?\nClick a class in the list above (any of the top-k), pick a method, and "
                "see which pixels made the model say it, and whether removing them really changes its mind "
                "(deletion / insertion, beside a random map).", elem_classes="view-note")
    with gr.Row():
        method = gr.Dropdown([(m, m) for m in offered], value=DEFAULT_METHOD, label="Method",
                             elem_id="explain-method", scale=2)
        opacity = gr.Slider(0, 1, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity",
                            elem_id="explain-opacity", scale=2)
        button = gr.Button("Explain", variant="primary", elem_id="explain-button", scale=1)
    selected_note = gr.Markdown(CHOOSE_A_CLASS, elem_id="explain-selected")
    with gr.Accordion(HELD_BACK_TITLE, open=False, visible=bool(held_back),
                      elem_id="explain-held-back-box") as held_back_box:
        held_back_note = gr.Markdown(held_back_markdown(held_back), elem_id="explain-held-back",
                                     elem_classes="view-note")
    with gr.Accordion("What the methods do", open=False):
        gr.Markdown(method_help())
    with gr.Row(equal_height=False):
        overlay = gr.Image(label="Map over the model input", type="numpy", format="png", interactive=False,
                           height=300, elem_id="explain-overlay")
        raw = gr.Image(label="Raw map (0 dark - 1 light)", type="numpy", format="png", interactive=False,
                       height=300, elem_id="explain-map")
    gr.Markdown("**Faithfulness**: the class probability as the map's most salient pixels are removed "
                "(deletion) or revealed (insertion) over a blurred copy, beside a random map's (dashed).",
                elem_classes="view-note")
    curves = gr.Image(label="Deletion and insertion curves", show_label=False, type="numpy", format="png",
                      interactive=False, elem_id="explain-curves")
    scores = gr.Markdown(elem_id="explain-scores", elem_classes="result-table")
    gr.Markdown(caveats.GUIDE, elem_id="explain-guide", elem_classes="view-note")
    with gr.Accordion("Raw map (.npy) and summary (JSON)", open=False):
        npy = gr.File(label="Raw map, float32 [H, W]", elem_id="explain-npy")
        summary = gr.JSON(label="Summary", elem_id="explain-summary")
    selected = gr.State("top1")
    last_map = gr.State(None)
    # The API's method and target: free text, checked at the gate (demo/gate.py) and then against the model.
    api_method = gr.Textbox(visible=False)
    api_target = gr.Textbox(visible=False)
    for component in (method, api_method):
        gate.guard(component, method_argument, "method")
    gate.guard(api_target, target_argument, "target")
    gate.guard(opacity, partial(arguments.number, "opacity", low=0.0, high=1.0, default=DEFAULT_OPACITY), "opacity")

    gr.on(triggers=[], fn=callbacks.explain_api, inputs=[image, architecture, api_method, api_target],
          outputs=[overlay, npy, summary], api_name="explain", **model_events)
    explain_ui = dict(fn=callbacks.explain_ui, inputs=[image, architecture, method, selected, opacity],
                      outputs=[overlay, raw, curves, scores, npy, summary, last_map], api_visibility="private",
                      trigger_mode="always_last", **model_events)
    label.select(callbacks.on_class_select, None, [selected, selected_note], **quick).then(**explain_ui)
    gr.on([button.click, method.select], **explain_ui)
    opacity.change(callbacks.reoverlay, [last_map, opacity], [overlay], **quick)
    image.change(callbacks.on_image, None, [selected, selected_note], **quick)
    architecture.select(callbacks.on_architecture, [architecture, method], [method, held_back_note, held_back_box],
                        **quick)
    return dict(method=method, held_back_note=held_back_note, held_back_box=held_back_box, opacity=opacity,
                button=button, overlay=overlay, raw=raw, curves=curves, scores=scores, npy=npy, summary=summary,
                selected=selected)
