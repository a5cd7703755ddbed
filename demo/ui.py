"""The Gradio app: layout (:func:`build_demo`) and the callbacks behind it
(:class:`Callbacks`, plain functions of plain values, tested without a browser).

Public API endpoints (``gradio_client``): ``/classify`` and ``/swin_views``;
see the README's "API" section. Every other event is private.
"""
from __future__ import annotations

import gc
import os
from pathlib import Path

import gradio as gr

import models
from demo import images, panels
from demo.service import Classification, InferenceService, Settings, configure_torch

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
EXAMPLES = ["cat.jpg", "espresso.jpg", "astronaut.jpg", "rocket.jpg", "camera.png", "clock.png", "coins.png"]
DEFAULT_ARCHITECTURE = models.OFFLINE_DEFAULT
DEFAULT_TOP_K = 5
MAX_TOP_K = 20

WEIGHTS_STATUS = {
    "bundled": "ready (weights ship with the app)",
    "cached": "ready (weights in the local Hub cache)",
    "download": "needs a download from the Hugging Face Hub",
    "untrained": "untrained (no pretrained weights exist)",
}

# (view, tab, label: the API's name for the output, element id); tabs in page order.
VIEW_TABS = [
    ("query", "Query attention", "Query attention", "query-attention"),
    ("windows", "Windows", "Window grids", "windows"),
    ("mask", "Shifted-window mask", "Region map and window mask", "mask"),
    ("block", "Block attention", "Attention received", "block-attention"),
    ("bias", "Relative position bias", "Relative position bias", "bias"),
]

CSS = """
.view-note {font-size: 0.9em; opacity: 0.85}
#model-input img {cursor: crosshair; image-rendering: pixelated}
"""


def pass_path_unopened(component: gr.Image) -> gr.Image:
    """Make a ``gr.Image(type="filepath")`` hand the callback the uploaded
    file's path without opening it, so that :func:`demo.images.load_image`
    alone decides what is an image: gr.Image opens the file with PIL first, and
    a non-image would fail there with no useful message. (An instance
    attribute, not a subclass: Gradio writes a .pyi stub next to any module
    that subclasses a component.)"""
    open_with_gradio = component.preprocess

    def preprocess(payload):
        if payload is None:
            return None
        if payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)
        try:  # a data: URL: let Gradio write it to a file
            return open_with_gradio(payload)
        except gr.Error:
            raise
        except Exception as error:
            raise user_error("This data is not an image this app can read; upload a photo instead.") from error

    component.preprocess = preprocess
    return component


def user_error(message: str) -> gr.Error:
    """A one-sentence message for the person at the keyboard; no stack trace in the log."""
    return gr.Error(message, print_exception=False)


def architecture_choices() -> list[tuple[str, str]]:
    """(label, name) for the chooser: every architecture and whether it is ready."""
    short = {"bundled": "ready", "cached": "ready", "download": "needs a download", "untrained": "untrained"}
    return [(f"{name} · {short[models.weights_status(name)]}", name) for name in models.list_models()]


def architecture_info(name: str) -> str:
    spec = models.get_spec(name)
    status = models.weights_status(spec.name)
    swin = "" if spec.is_swin else " Inside Swin needs a Swin Transformer (swin_*)."
    return f"**{spec.name}**: {spec.description}. Weights: {WEIGHTS_STATUS[status]}.{swin}"


def swin_controls(name: str) -> dict | None:
    """Stages, blocks per stage, heads per stage and input size of a Swin, from its spec."""
    spec = models.get_spec(name)
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
        except (TypeError, ValueError):
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


class Callbacks:
    """What the events run. Inputs and outputs are plain values; errors a user
    can cause become ``gr.Error`` with one sentence."""

    def __init__(self, service: InferenceService):
        self.service = service

    # ------------------------------------------------------------------ helpers
    def open_image(self, path: str | None):
        if not path:
            raise user_error("No image was given; upload a photo or pick an example first.")
        try:
            return images.load_image(path, max_pixels=self.service.settings.max_pixels)
        except images.ImageInputError as error:
            raise user_error(str(error)) from error

    @staticmethod
    def _spec(name: str):
        try:
            return models.get_spec(name)
        except ValueError as error:
            raise user_error(str(error)) from error

    @staticmethod
    def _reporter(progress):
        if progress is None:
            return None
        return lambda fraction, description: progress(fraction, desc=description)

    def _classification(self, image_path, architecture, top_k, progress) -> Classification:
        spec = self._spec(architecture)
        image = self.open_image(image_path)
        try:
            return self.service.classify(image, spec.name, int(top_k), report=self._reporter(progress))
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
        image = self.open_image(image)
        forward = self.service.swin_forward(image, spec.name, report=self._reporter(progress))
        height, width = forward.model_input.shape[:2]
        query_x = width // 2 if query_x is None else query_x
        query_y = height // 2 if query_y is None else query_y
        try:
            selection = panels.check_selection(forward.model, (height, width), stage, block, head, query_x, query_y)
        except panels.SelectionError as error:
            raise user_error(str(error)) from error
        if progress is not None:
            progress(None, desc="Drawing")
        views = panels.render_swin_panels(forward, selection, self.service.drawings)
        return (views.model_input, views.windows, views.mask, views.query_attention, views.block_attention,
                views.bias, views.summary)

    # ------------------------------------------------------------------ UI-only
    def classify_ui(self, image, architecture, top_k, progress=gr.Progress()):
        """(label, details, notice, fallback button) for the page."""
        hidden = gr.update(visible=False)
        if not image:
            return None, "", gr.update(value="", visible=False), hidden
        spec = self._spec(architecture)
        try:
            result = self._classification(image, spec.name, top_k, progress)
        except gr.Error as error:
            if not isinstance(error.__cause__, models.WeightsUnavailableError):
                raise
            return (None, "", gr.update(value=f"⚠️ {error.message}", visible=True),
                    gr.update(visible=True, value=f"Use {models.OFFLINE_DEFAULT} (works offline)"))
        weights = "pretrained weights" if result.pretrained else \
            "**untrained weights**: these probabilities mean nothing"
        threads = self.service.settings.torch_threads
        batch = f" for a batch of {result.batch_size} images sent at once" if result.batch_size > 1 else ""
        details = (f"**{result.model_name}** · {weights} · the model took **{result.milliseconds:.0f} ms**{batch} "
                   f"(CPU, {threads} thread{'s' if threads > 1 else ''})")
        return result.probabilities, details, gr.update(value="", visible=False), hidden

    def swin_views_ui(self, image, architecture, stage, block, head, query_x, query_y, progress=gr.Progress()):
        """The views for the page: like :meth:`swin_views`, but a selection left
        over from another architecture or stage is fitted to this one instead
        of refused, and a non-Swin architecture gets a hint."""
        spec = self._spec(architecture)
        empty = (None,) * 6
        if not spec.is_swin:
            return (*empty, f"Choose a Swin Transformer (swin_*) above to look inside it; {spec.name} is "
                            "a convolutional network.")
        if not image:
            return (*empty, "Upload an image or pick an example above.")
        stage, block, head, query_x, query_y = fit_selection(spec.name, stage, block, head, query_x, query_y)
        return self.swin_views(image, spec.name, stage, block, head, query_x, query_y, progress)

    @staticmethod
    def on_architecture(architecture):
        """Info line and the Swin controls fitted to the chosen architecture."""
        info = architecture_info(architecture)
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
        stage = min(int(stage), len(controls["depths"]) - 1)
        depth, heads = controls["depths"][stage], controls["heads"][stage]
        head = head if head == "mean" or (str(head).isdigit() and int(head) < heads) else "mean"
        return (gr.update(maximum=depth - 1, value=min(int(block), depth - 1)),
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
        x, y = int(evt.index[0]) // scale, int(evt.index[1]) // scale
        return min(max(x, 0), width - 1), min(max(y, 0), height - 1)

    @staticmethod
    def use_offline_default():
        return gr.update(value=models.OFFLINE_DEFAULT, choices=architecture_choices())


ANALYTICS_SUMMARY_EVERY = 1000  # events


def classify_concurrency(service: InferenceService) -> int:
    """Classification events that may run at once: enough to fill a batch on
    every lane, and no more than 16."""
    return min(service.classifier.max_batch * service.classifier.lanes, 16)


def build_demo(service: InferenceService | None = None) -> gr.Blocks:
    """The whole app. ``service`` defaults to one configured from the environment."""
    service = service or InferenceService(Settings.from_env())
    configure_torch(service.settings)
    images.configure_pil(service.settings.max_pixels)
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
                    "predicts. For Swin Transformers, look at the windows, the shifted-window masks and the "
                    "attention on your own image.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                image = pass_path_unopened(gr.Image(
                    type="filepath", sources=["upload", "webcam", "clipboard"], format="png",
                    label="Image (upload, drop, paste or webcam)", height=340, elem_id="input-image"))
                architecture = gr.Dropdown(architecture_choices(), value=DEFAULT_ARCHITECTURE,
                                           label="Architecture", elem_id="architecture")
                info = gr.Markdown(architecture_info(DEFAULT_ARCHITECTURE), elem_classes="view-note")
                top_k = gr.Slider(1, MAX_TOP_K, value=DEFAULT_TOP_K, step=1, label="Top-k classes")
            with gr.Column(scale=1):
                label = gr.Label(label="Prediction (softmax probability)", elem_id="prediction")
                details = gr.Markdown(elem_id="details")
                notice = gr.Markdown(visible=False, elem_id="notice")
                fallback = gr.Button(f"Use {models.OFFLINE_DEFAULT} (works offline)", visible=False,
                                     variant="primary", elem_id="fallback")
        gr.Examples([[str(EXAMPLES_DIR / name)] for name in EXAMPLES], inputs=[image], examples_per_page=8,
                    label="Examples (CC0 / public domain, from scikit-image; see assets/examples/SOURCES.md)")

        gr.Markdown("## Inside Swin\nFor a Swin Transformer: **click a point on the model input** (the resized, "
                    "centre-cropped image the model sees) to choose the query token, then pick a stage, block "
                    "and head.")
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
                summary = gr.Markdown("Choose a Swin Transformer (swin_*) above to look inside it.",
                                      label="Summary", elem_id="swin-summary")
            with gr.Column(scale=2):
                with gr.Tabs():
                    view_images = {}
                    for key, tab_name, view_label, elem_id in VIEW_TABS:
                        with gr.Tab(tab_name):
                            view_images[key] = gr.Image(label=view_label, show_label=False, format="png",
                                                        interactive=False, elem_id=elem_id)
                            gr.Markdown(panels.EXPLANATIONS[key], elem_classes="view-note")

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
        top_k.release(**classify_ui)
        architecture.select(callbacks.on_architecture, [architecture], architecture_controls, **quick) \
            .then(**classify_ui).then(**swin_ui)
        fallback.click(callbacks.use_offline_default, None, [architecture], **quick) \
            .then(callbacks.on_architecture, [architecture], architecture_controls, **quick) \
            .then(**classify_ui).then(**swin_ui)
        stage.release(callbacks.on_stage, [architecture, stage, block, head], [block, head], **quick) \
            .then(**swin_ui)
        gr.on([block.release, head.select, query_x.submit, query_y.submit], **swin_ui)
        model_input.select(callbacks.on_select, [architecture], [query_x, query_y], **quick).then(**swin_ui)
        # Weights may have been downloaded since the page was built: refresh the chooser's labels.
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
    demo.launch(**launch_options(settings))


def launch_options(settings: Settings | None = None) -> dict:
    """Arguments for ``demo.launch``. Host and port come from Gradio's own
    ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (default 127.0.0.1:7860)."""
    settings = settings or Settings.from_env()
    return dict(max_file_size=int(settings.max_upload_mb * 2**20), css=CSS, theme=gr.themes.Soft())
