"""The Gradio app: layout (:func:`build_demo`) and the callbacks behind it
(:class:`Callbacks`, plain functions of plain values, tested without a browser).

Public API endpoints (``gradio_client``): ``/classify`` and ``/swin_views``;
see the README's "API" section. Every other event is private.
"""
from __future__ import annotations

import gc
import json
import os
from functools import partial
from pathlib import Path

import gradio as gr

import models
from demo import arguments, caveats, compare_tab, explain_tab, gate, images, outputs, panels, train_tab
from demo.lab_tab import build_lab_tab
from demo.service import Classification, InferenceService, Settings, configure_torch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
EXAMPLES = ["cat.jpg", "espresso.jpg", "astronaut.jpg", "rocket.jpg", "camera.png", "clock.png", "coins.png",
            "digit_2.png", "digit_3.png", "digit_7.png"]  # the digits: for swin_digits
DEFAULT_ARCHITECTURE = models.OFFLINE_DEFAULT
DEFAULT_TOP_K = 5
MAX_TOP_K = 20

WEIGHTS_STATUS = {
    "bundled": "ready (weights ship with the app)",
    "cached": "ready (weights in the local Hub cache)",
    "download": "needs a download from the Hugging Face Hub",
    "untrained": "untrained (no pretrained weights exist)",
    "trained": "ready (trained here, in the user-models folder)",
}

# (view, tab, label: the API's name for the output, element id); tabs in page order.
VIEW_TABS = [
    ("query", "Query", "Query attention", "query-attention"),
    ("windows", "Windows", "Window grids", "windows"),
    ("mask", "Shift mask", "Region map and window mask", "mask"),
    ("block", "Block", "Attention received", "block-attention"),
    ("bias", "Position bias", "Relative position bias", "bias"),
]

CSS = """
.view-note {font-size: 0.9em; opacity: 0.85}
#model-input img {cursor: crosshair; image-rendering: pixelated}
/* Figures with a title across their top: Gradio's download / full-screen buttons
   sit above the picture instead of over the title's end. */
.titled-figure .icon-button-wrapper {position: static; justify-content: flex-end; width: fit-content;
                                     margin-left: auto; box-shadow: none}
/* Result tables (Markdown): Gradio's Markdown lets text break anywhere, which split words and numbers
   ("varia nt", "0.0 27 8") in narrow columns. Break only between words; a table wider than its
   column scrolls sideways instead of squeezing. */
.result-table table {display: block; width: fit-content; max-width: 100%; overflow-x: auto}
.result-table th, .result-table td {overflow-wrap: normal; word-break: normal; hyphens: none}
.nowrap-cells td {white-space: nowrap}
"""


def user_error(message: str, what: str = "") -> gr.Error:
    """A one-sentence message for the person at the keyboard; one line in the log, no stack trace."""
    return gate.refuse(message, what)


def checked(what: str, check, *args, **kwargs):
    """``check(*args, **kwargs)`` (a demo.arguments checker), its ArgumentError a refusal."""
    try:
        return check(*args, **kwargs)
    except arguments.ArgumentError as error:
        raise user_error(str(error), what) from None


def architecture_choices() -> list[tuple[str, str]]:
    """(label, name) for the chooser: every architecture and whether it is ready."""
    short = {"bundled": "ready", "cached": "ready", "download": "needs a download", "untrained": "untrained",
             "trained": "trained here"}
    return [(f"{name} · {short[models.weights_status(name)]}", name) for name in models.list_models()]


def validation_accuracy(spec) -> float | None:
    """A trained model's best validation accuracy, from its folder's metrics.json; None when unknown."""
    try:
        metrics = json.loads((Path(spec.weights_path) / "metrics.json").read_text(encoding="utf-8"))
        return float(metrics["val_accuracy"])
    except (TypeError, OSError, ValueError, KeyError):
        return None


def architecture_info(name: str) -> str:
    spec = models.get_spec(name)
    status = models.weights_status(spec.name)
    swin = (" Look inside it in the Inside Swin tab." if spec.is_swin else
            " Inside Swin needs a Swin Transformer; this is a convolutional network.")
    if status != "trained":
        return f"**{spec.name}**: {spec.description}. Weights: {WEIGHTS_STATUS[status]}.{swin}"
    # Models trained in the app before their description dropped the name began with "name: ".
    description = spec.description.removeprefix(f"{spec.name}: ")
    accuracy = validation_accuracy(spec)
    accuracy = "" if accuracy is None else f", validation accuracy {accuracy:.1%}"
    return f"**{spec.name}**: {description}{accuracy} (kept in the user-models folder).{swin}"


def weights_note(name: str, pretrained: bool) -> str:
    """What the weights are, for the line under a result: "trained here" for the user's models."""
    if not pretrained:
        return "**untrained weights**: these probabilities mean nothing"
    return panels.trained_weights(name)


def swin_controls(name: str) -> dict | None:
    """Stages, blocks per stage, heads per stage and input size of a Swin, from
    its spec; None for any other architecture (or a name that is none)."""
    try:
        spec = models.get_spec(name)
    except (ValueError, TypeError):
        return None
    if not spec.is_swin:
        return None
    return {"depths": tuple(spec.config["depths"]), "heads": tuple(spec.config["num_heads"]),
            "input_hw": tuple(spec.input_size[1:])}


def head_choices(heads: int) -> list[tuple[str, str]]:
    return [("mean of heads", "mean")] + [(f"head {h}", str(h)) for h in range(heads)]


def fit_selection(name: str, stage, block, head, query_x, query_y):
    """A page selection fitted to the Swin ``name``: stage, block and query
    clamped into range, a head it lacks replaced by the mean (blank numbers
    by the defaults)."""
    controls = swin_controls(name)
    depths, heads = controls["depths"], controls["heads"]
    height, width = controls["input_hw"]

    def clamp(value, default, top):
        try:
            return min(max(int(float(value)), 0), top)
        except (TypeError, ValueError, OverflowError):  # None, "abc", NaN, 1e400
            return default

    stage = clamp(stage, 0, len(depths) - 1)
    block = clamp(block, 1, depths[stage] - 1)
    try:
        head = panels.parse_head(head)
    except panels.SelectionError:
        head = None
    head = "mean" if head is None or head >= heads[stage] else str(head)
    return stage, block, head, clamp(query_x, width // 2, width - 1), clamp(query_y, height // 2, height - 1)


def _swin_upper_bounds() -> tuple[int, int, int]:
    """The largest stage, block and head index over every Swin offered: the API's bounds."""
    swins = [c for c in map(swin_controls, models.list_models()) if c]
    return (max(len(c["depths"]) for c in swins) - 1, max(max(c["depths"]) for c in swins) - 1,
            max(max(c["heads"]) for c in swins) - 1)


def _largest_input_pixel() -> int:
    """The largest query coordinate any model allows (383, for the 384-pixel Swins)."""
    return max(max(models.get_spec(n).input_size[1:]) for n in models.list_models()) - 1


def head_argument(value, max_head: int):
    """A head as the API takes it: a string ("mean", "3", "head 3": panels.parse_head
    reads it and says what is wrong), None (the mean) or a whole number (-1: the mean)."""
    if value is None or (isinstance(value, str) and len(value) <= 40):
        return value
    try:
        return arguments.whole_number("head", value, -1, max_head)
    except arguments.ArgumentError:
        raise arguments.ArgumentError(f"head must be \"mean\" or a whole number from 0 to {max_head}, "
                                      f"not {value!r:.40}.") from None


def guard_arguments(architecture, top_k, stage, block, head, query_x, query_y) -> None:
    """Every argument component's value checked before any callback runs (see
    :func:`demo.gate.guard`): the type, finiteness and the widest range any
    model allows; the callbacks then check what depends on the model."""
    max_stage, max_block, max_head = _swin_upper_bounds()
    largest = _largest_input_pixel()
    gate.guard(architecture, partial(arguments.choice, "architecture", choices=models.list_models()), "architecture")
    gate.guard(top_k, partial(arguments.whole_number, "top_k", low=1, high=MAX_TOP_K, default=DEFAULT_TOP_K), "top_k")
    gate.guard(stage, partial(arguments.whole_number, "stage", low=0, high=max_stage, default=0), "stage")
    gate.guard(block, partial(arguments.whole_number, "block", low=0, high=max_block, default=1), "block")
    gate.guard(head, partial(head_argument, max_head=max_head), "head")
    for name, component in (("query_x", query_x), ("query_y", query_y)):
        gate.guard(component, partial(arguments.whole_number, name, low=0, high=largest, default=None), name)


class Callbacks:
    """What the events run. Inputs and outputs are plain values; errors a user
    can cause become ``gr.Error`` with one sentence."""

    def __init__(self, service: InferenceService):
        self.service = service
        self.limits = gate.Limits.from_settings(service.settings)

    # ------------------------------------------------------------------ helpers
    def open_image(self, image):
        """The image an input gave (``gate.image_input``: already through the
        gate) or a value a client sent, through :func:`demo.gate.open_image`."""
        try:
            return gate.open_image(image, self.limits)
        except gate.GateError as error:
            raise user_error(str(error), "image") from None

    @staticmethod
    def _spec(name):
        if not isinstance(name, str) or len(name) > 100:
            checked("architecture", arguments.choice, "architecture", name, models.list_models())
        try:
            return models.get_spec(name)
        except ValueError as error:
            raise user_error(str(error), "architecture") from None

    @staticmethod
    def _reporter(progress):
        if progress is None:
            return None
        return lambda fraction, description: progress(fraction, desc=description)

    def _classification(self, image, architecture, top_k, progress) -> Classification:
        spec = self._spec(architecture)
        top_k = checked("top_k", arguments.whole_number, "top_k", top_k, 1, MAX_TOP_K, default=DEFAULT_TOP_K)
        image = self.open_image(image)
        try:
            return self.service.classify(image, spec.name, top_k, report=self._reporter(progress))
        except models.WeightsUnavailableError as error:
            raise user_error(f"{error} Choose {models.OFFLINE_DEFAULT}, which works offline, "
                             "or try again later.") from error

    # ------------------------------------------------------------------ public API
    def classify(self, image, architecture, top_k=DEFAULT_TOP_K, progress=gr.Progress()) -> dict[str, float]:
        """Classify an image: the top-k classes and their softmax probabilities
        (gr.Label's value: {class name: probability})."""
        return self._classification(image, architecture, top_k, progress).probabilities

    def swin_views(self, image, architecture, stage=0, block=1, head="mean", query_x=None, query_y=None,
                   progress=gr.Progress()):
        """Inside a Swin Transformer: the model input with the query point, the
        window grids of the stage, the shifted-window mask of the window under
        the query, the query's attention, the block's attention and the
        relative position bias, and a markdown summary (it says "untrained
        weights" when the weights could not be had). Query x / y are pixels of
        the model input (0 to 223 for 224-pixel models); default: its centre."""
        spec = self._spec(architecture)
        if not spec.is_swin:
            raise user_error(f"{spec.name} is not a Swin Transformer; choose one of "
                             f"{', '.join(n for n in models.list_models() if models.get_spec(n).is_swin)}.")
        max_stage, max_block, max_head = _swin_upper_bounds()
        height, width = spec.input_size[1:]
        stage = checked("stage", arguments.whole_number, "stage", stage, 0, max_stage, default=0)
        block = checked("block", arguments.whole_number, "block", block, 0, max_block, default=1)
        head = checked("head", head_argument, head, max_head)
        # Any pixel of the largest model input passes here; panels names this model's range.
        largest = _largest_input_pixel()
        query_x = checked("query_x", arguments.whole_number, "query_x", query_x, 0, largest, default=width // 2)
        query_y = checked("query_y", arguments.whole_number, "query_y", query_y, 0, largest, default=height // 2)
        image = self.open_image(image)
        forward = self.service.swin_forward(image, spec.name, report=self._reporter(progress))
        height, width = forward.model_input.shape[:2]
        try:
            selection = panels.check_selection(forward.model, (height, width), stage, block, head, query_x, query_y)
        except panels.SelectionError as error:
            raise user_error(str(error), "selection") from None
        if progress is not None:
            progress(None, desc="Drawing")
        views = panels.render_swin_panels(forward, selection, self.service.drawings)
        pictures = (views.model_input, views.windows, views.mask, views.query_attention, views.block_attention,
                    views.bias)
        return (*map(outputs.png_file, pictures), views.summary)

    # ------------------------------------------------------------------ UI-only
    def classify_ui(self, image, architecture, top_k, progress=gr.Progress()):
        """(label, details, notice, fallback button) for the page."""
        hidden = gr.update(visible=False)
        if image is None or image == "":
            return None, "", gr.update(value="", visible=False), hidden
        spec = self._spec(architecture)
        try:
            result = self._classification(image, spec.name, top_k, progress)
        except gr.Error as error:
            if not isinstance(error.__cause__, models.WeightsUnavailableError):
                raise
            return (None, "", gr.update(value=f"⚠️ {error.message}", visible=True),
                    gr.update(visible=True, value=f"Use {models.OFFLINE_DEFAULT} (works offline)"))
        weights = weights_note(result.model_name, result.pretrained)
        threads = self.service.settings.torch_threads
        batch = f" for a batch of {result.batch_size} images sent at once" if result.batch_size > 1 else ""
        details = (f"**{result.model_name}** · {weights} · the model took **{result.milliseconds:.0f} ms**{batch} "
                   f"(CPU, {threads} thread{'s' if threads > 1 else ''})")
        notes = caveats.image_notes(spec, result.image_size)
        notice = gr.update(value="\n\n".join(f"⚠️ {note}" for note in notes), visible=bool(notes))
        return result.probabilities, details, notice, hidden

    def swin_views_ui(self, image, architecture, stage, block, head, query_x, query_y, progress=gr.Progress()):
        """The views for the page: like :meth:`swin_views`, but a selection left
        over from another architecture or stage is fitted to this one instead
        of refused, and a non-Swin architecture gets a hint."""
        spec = self._spec(architecture)
        empty = (None,) * 6
        if not spec.is_swin:
            return (*empty, f"Choose a Swin Transformer above (a built-in one or one trained here) to look "
                            f"inside it; {spec.name} is a convolutional network.")
        if image is None or image == "":
            return (*empty, "Upload an image or pick an example above.")
        stage, block, head, query_x, query_y = fit_selection(spec.name, stage, block, head, query_x, query_y)
        return self.swin_views(image, spec.name, stage, block, head, query_x, query_y, progress)

    @staticmethod
    def on_architecture(architecture):
        """Info line and the Swin controls fitted to the chosen architecture."""
        info = architecture_info(Callbacks._spec(architecture).name)
        controls = swin_controls(architecture)
        if controls is None:
            return info, gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        height, width = controls["input_hw"]
        return (info,
                gr.update(maximum=len(controls["depths"]) - 1, value=0),
                gr.update(maximum=controls["depths"][0] - 1, value=min(1, controls["depths"][0] - 1)),
                gr.update(choices=head_choices(controls["heads"][0]), value="mean"),
                gr.update(value=width // 2, maximum=width - 1),
                gr.update(value=height // 2, maximum=height - 1))

    @staticmethod
    def on_stage(architecture, stage, block, head):
        """Block and head choices of the chosen stage, keeping the current ones where they exist."""
        controls = swin_controls(architecture)
        if controls is None:
            return gr.update(), gr.update()
        stage, block, head, _, _ = fit_selection(architecture, stage, block, head, None, None)
        depth = controls["depths"][stage]
        heads = controls["heads"][stage]
        return (gr.update(maximum=depth - 1, value=min(block, depth - 1)),
                gr.update(choices=head_choices(heads), value=head))

    @staticmethod
    def on_select(evt: gr.SelectData, architecture):
        """A click on the (possibly enlarged) model input: its pixel (x, y) in
        model-input coordinates, kept inside the image."""
        controls = swin_controls(architecture)
        if controls is None:
            return gr.update(), gr.update()
        height, width = controls["input_hw"]
        scale = panels.display_scale((height, width))
        try:
            x, y = int(evt.index[0]) // scale, int(evt.index[1]) // scale
        except (TypeError, ValueError, OverflowError, IndexError, KeyError):  # not a click the page sends
            return gr.update(), gr.update()
        return min(max(x, 0), width - 1), min(max(y, 0), height - 1)

    @staticmethod
    def use_offline_default():
        return gr.update(value=models.OFFLINE_DEFAULT, choices=architecture_choices())


ANALYTICS_SUMMARY_EVERY = 1000  # events


def classify_concurrency(service: InferenceService) -> int:
    """Classification events that may run at once: enough to fill a batch on
    every lane, and no more than 16."""
    return min(service.classifier.max_batch * service.classifier.lanes, 16)


def build_swin_tab(max_stage: int, max_block: int, max_head: int, first_swin: dict) -> dict:
    """The "Inside Swin" tab's components (wired in :func:`build_demo`)."""
    gr.Markdown("For a Swin Transformer: **click a point on the model input** (the resized, centre-cropped "
                "image the model sees) to choose the query token, then pick a stage, block and head.",
                elem_classes="view-note")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            model_input = gr.Image(label="Model input", type="numpy",
                                   format="png", interactive=False, height=300, elem_id="model-input")
            stage = gr.Slider(0, max_stage, value=0, step=1, label="Stage", elem_id="stage")
            block = gr.Slider(0, max_block, value=1, step=1, label="Block (odd blocks are shifted)",
                              elem_id="block")
            head = gr.Dropdown(head_choices(max_head + 1), value="mean", allow_custom_value=True,
                               label="Head", elem_id="head")
            with gr.Row():
                query_x = gr.Number(first_swin["input_hw"][1] // 2, precision=0, minimum=0, label="Query x",
                                    elem_id="query-x")
                query_y = gr.Number(first_swin["input_hw"][0] // 2, precision=0, minimum=0, label="Query y",
                                    elem_id="query-y")
            summary = gr.Markdown("Choose a Swin Transformer (a built-in one or one trained here) to look inside it.",
                                  label="Summary", elem_id="swin-summary")
        with gr.Column(scale=2):
            with gr.Tabs():
                view_images = {}
                for key, tab_name, view_label, elem_id in VIEW_TABS:
                    with gr.Tab(tab_name):
                        view_images[key] = gr.Image(label=view_label, show_label=False, format="png",
                                                    interactive=False, elem_id=elem_id,
                                                    elem_classes="titled-figure")
                        gr.Markdown(panels.EXPLANATIONS[key], elem_classes="view-note")
    return dict(model_input=model_input, stage=stage, block=block, head=head, query_x=query_x, query_y=query_y,
                summary=summary, view_images=view_images)


def build_demo(service: InferenceService | None = None) -> gr.Blocks:
    """The whole app. ``service`` defaults to one configured from the environment."""
    service = service or InferenceService(Settings.from_env())
    configure_torch(service.settings)
    images.configure_pil(service.settings.max_pixels)
    gate.configure(gate.Limits.from_settings(service.settings))
    callbacks = Callbacks(service)
    # Classification and Swin-view requests may enter together and share one
    # limit: the service's batcher queues their forwards in arrival order and
    # runs them on its workers, a forward per core (so the views get their
    # share of the cores; benchmarks/RESULTS.md, "24 clients at once"). Each
    # waits on one of Gradio's 40 worker threads: at most 16 do, so that other
    # events always find a thread.
    classify_events = dict(concurrency_id="model", concurrency_limit=classify_concurrency(service))
    model_events = classify_events
    quick = dict(concurrency_limit=None, show_progress="hidden", api_visibility="private")
    max_stage, max_block, max_head = _swin_upper_bounds()
    first_swin = swin_controls("swin_tiny_patch4_window7_224")

    with gr.Blocks(title="Inside the Classifier") as demo:
        gr.Markdown("# Inside the Classifier\nDrop an image in, pick an architecture, and see what the model "
                    "predicts and *why*: click a class to see which pixels made the model say it, and whether "
                    "that map beats chance. For Swin Transformers, look at the windows, the shifted-window masks "
                    "and the attention on your own image.")
        # The image and the architecture sit beside the tabs: every tab works on them.
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                image = gate.image_input(
                    sources=["upload", "webcam", "clipboard"], format="png",
                    label="Image (upload, drop, paste or webcam)", height=340, elem_id="input-image")
                architecture = gr.Dropdown(architecture_choices(), value=DEFAULT_ARCHITECTURE,
                                           label="Architecture", elem_id="architecture")
                info = gr.Markdown(architecture_info(DEFAULT_ARCHITECTURE), elem_classes="view-note")
                gr.Examples([[str(EXAMPLES_DIR / name)] for name in EXAMPLES], inputs=[image], examples_per_page=10,
                            label="Examples (photos CC0 / public domain from scikit-image, digits CC BY 4.0 from "
                                  "scikit-learn; see assets/examples/SOURCES.md)")
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Classify & explain", id="classify-explain", elem_id="tab-classify-explain"):
                        top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label="Top-k classes")
                        label = gr.Label(label="Prediction (softmax probability): click a class to explain it",
                                         elem_id="prediction")
                        details = gr.Markdown(elem_id="details")
                        notice = gr.Markdown(visible=False, elem_id="notice")
                        fallback = gr.Button(f"Use {models.OFFLINE_DEFAULT} (works offline)", visible=False,
                                             variant="primary", elem_id="fallback")
                        explain_callbacks = explain_tab.ExplainCallbacks(service, callbacks.open_image)
                        explain_section = explain_tab.build_explain_section(
                            explain_callbacks, image, architecture, label, DEFAULT_ARCHITECTURE, model_events, quick)
                    with gr.Tab("Inside Swin", id="inside-swin", elem_id="tab-inside-swin"):
                        swin_tab = build_swin_tab(max_stage, max_block, max_head, first_swin)
                    with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                        compare = compare_tab.build_compare_tab(
                            compare_tab.CompareCallbacks(service, callbacks.open_image), image, model_events)
                    with gr.Tab("Train", id="train", elem_id="tab-train"):
                        train_tab.build_train_tab(architecture_dropdowns=[architecture, compare["chosen"]])
                    with gr.Tab("Attention lab", id="attention-lab", elem_id="tab-attention-lab"):
                        build_lab_tab()
                    # Later tabs join here: `with gr.Tab("..."): build_x_tab(...)`.
        model_input, stage, block, head, query_x, query_y, summary, view_images = (
            swin_tab[k] for k in ("model_input", "stage", "block", "head", "query_x", "query_y", "summary",
                                  "view_images"))

        guard_arguments(architecture, top_k, stage, block, head, query_x, query_y)
        swin_inputs = [image, architecture, stage, block, head, query_x, query_y]
        swin_outputs = [model_input] + [view_images[key] for key in ("windows", "mask", "query", "block", "bias")] \
            + [summary]
        classify_ui = dict(fn=callbacks.classify_ui, inputs=[image, architecture, top_k],
                           outputs=[label, details, notice, fallback], api_visibility="private", **classify_events)
        swin_ui = dict(fn=callbacks.swin_views_ui, inputs=swin_inputs, outputs=swin_outputs,
                       api_visibility="private", trigger_mode="always_last", **model_events)

        # The public API: events no page element triggers, with the page's components as their types.
        gr.on(triggers=[], fn=callbacks.classify, inputs=[image, architecture, top_k], outputs=[label],
              api_name="classify", **classify_events)
        gr.on(triggers=[], fn=callbacks.swin_views, inputs=swin_inputs, outputs=swin_outputs,
              api_name="swin_views", **model_events)

        # The page. User-only events (select, release, submit) so that updating a
        # control from code does not run the model again.
        architecture_controls = [info, stage, block, head, query_x, query_y]
        image.change(**classify_ui).then(**swin_ui)
        # Sliders: `release` ends a drag, `input` is a value typed into the slider's box (a drag's `input`
        # events queue behind the running one and only the last runs: trigger_mode="always_last").
        gr.on([top_k.release, top_k.input], trigger_mode="always_last", **classify_ui)
        architecture.select(callbacks.on_architecture, [architecture], architecture_controls, **quick) \
            .then(**classify_ui).then(**swin_ui)
        fallback.click(callbacks.use_offline_default, None, [architecture], **quick) \
            .then(callbacks.on_architecture, [architecture], architecture_controls, **quick) \
            .then(explain_callbacks.on_architecture, [architecture, explain_section["method"]],
                  [explain_section["method"], explain_section["held_back_note"], explain_section["held_back_box"]],
                  **quick) \
            .then(**classify_ui).then(**swin_ui)
        gr.on([stage.release, stage.input], callbacks.on_stage, [architecture, stage, block, head], [block, head],
              trigger_mode="always_last", **quick).then(**swin_ui)
        gr.on([block.release, block.input, head.select, head.input, query_x.submit, query_y.submit], **swin_ui)
        model_input.select(callbacks.on_select, [architecture], [query_x, query_y], **quick).then(**swin_ui)
        # Weights may have been downloaded (or models trained) since the page was built: refresh the chooser.
        demo.load(lambda: gr.update(choices=architecture_choices()), None, [architecture], **quick)
    # After every event Gradio rebuilds a pandas summary of up to 10,000 past
    # events for its monitoring page (unused here): about 6 ms of CPU per
    # request once the app has served thousands. Every 1,000 events will do.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(ANALYTICS_SUMMARY_EVERY))
    demo.queue(default_concurrency_limit=service.settings.concurrency, max_size=service.settings.queue_size)
    return demo


def serve(demo: gr.Blocks, settings: Settings | None = None) -> None:
    """``demo.launch(**launch_options())`` for a server that runs for days.

    First the objects that live as long as the app (the modules imported so
    far, the built page: about 510,000 objects) are moved out of the garbage
    collector's reach (``gc.freeze``). A full collection walks every object
    it tracks, and with these that took 240 ms here, during which every
    request in the process waits; it now walks only what serving left alive.
    """
    gc.collect()  # what is already garbage is freed, not frozen
    gc.freeze()
    settings = settings or Settings.from_env()
    demo.launch(**launch_options(settings), **gate.launch_options(demo, gate.Limits.from_settings(settings)))


def launch_options(settings: Settings | None = None) -> dict:
    """Arguments for ``demo.launch``. Host and port come from Gradio's own
    ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (default 127.0.0.1:7860)."""
    settings = settings or Settings.from_env()
    return dict(max_file_size=int(settings.max_upload_mb * 2**20), css=CSS, theme=gr.themes.Soft())
