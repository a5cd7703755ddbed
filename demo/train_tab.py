"""The Train tab: fine-tune a model on an uploaded zip of class folders, or
train a small Swin from scratch on the handwritten digits; watch the curves;
cancel; download the result; classify with it in every other tab.

:class:`TrainCallbacks` holds the plain callbacks (tested without a browser,
tests/test_train_tab.py); :func:`build_train_tab` lays them out.
"""
from __future__ import annotations

import functools
import queue
import secrets
import shutil
import threading
from pathlib import Path

import gradio as gr

import models
import training
from demo import arguments, gate
from training import plots, recipes

DIGITS, UPLOAD = "Handwritten digits (train a small Swin from scratch)", "My images (a .zip of class folders)"
# The digits Swin of the Train tab: the bundled swin_digits' configuration
# (assets/models/swin_digits/README.md), so a few epochs already work.
DIGITS_SWIN = dict(embed_dim=64, depths=(2, 2), num_heads=(4, 8), window_size=4, patch_size=2, image_size=16,
                   drop_path_rate=0.1)
# A quick try (and the browser test): the same layout and recipe with 16
# channels (heads 1 and 2): 19,424 parameters against 286,562.
TINY_DIGITS_SWIN = dict(DIGITS_SWIN, embed_dim=16, num_heads=(1, 2), drop_path_rate=0.0)
SMALL, TINY = "small (the bundled swin_digits' configuration)", "tiny (a quick try)"
DIGITS_SIZES = (SMALL, TINY)
DIGITS_RECIPE = dict(optimizer="adamw", betas=(0.9, 0.999), weight_decay=0.05, schedule="cosine", batch_size=16)
MAX_EPOCHS = 50


def user_error(message: str) -> gr.Error:
    return gate.refuse(message, "train")


def _architecture(value):
    # The list is read per call: a model trained since the page was built may be fine-tuned too.
    return arguments.choice("architecture", value, models.list_models(), default=models.OFFLINE_DEFAULT)


def guard_train_arguments(source, architecture, epochs, lr, name, size) -> None:
    """Check the training event's arguments at the boundary (:func:`demo.gate.guard`): the event is
    private but reachable through the queue by its index, so NaN, text or a list is refused in one
    sentence before Gradio's own preprocess sees it."""
    gate.guard(source, functools.partial(arguments.choice, "data", choices=[DIGITS, UPLOAD], default=DIGITS), "data")
    gate.guard(architecture, _architecture, "architecture")
    gate.guard(epochs, functools.partial(arguments.whole_number, "epochs", low=1, high=MAX_EPOCHS, default=5),
               "epochs")
    gate.guard(lr, functools.partial(arguments.number, "learning rate", low=0, high=10, default=None),
               "learning rate")
    gate.guard(name, functools.partial(arguments.text, "model name", max_length=64, default=""), "model name")
    gate.guard(size, functools.partial(arguments.choice, "model size", choices=list(DIGITS_SIZES), default=SMALL),
               "model size")


def finetune_choices() -> list[str]:
    """Architectures that can be fine-tuned now (weights ship with the app or are cached)."""
    return [n for n in models.list_models() if models.weights_status(n) in ("bundled", "cached", "trained")]


class TrainCallbacks:
    """One training at a time per app (the CPU is the limit); Cancel stops it
    after the current step and discards it: nothing is saved or registered,
    and its name stays free. A Cancel that comes once the model is being
    registered is told so instead. A page that goes away stops its run too,
    but keeps the best epoch so far (nobody asked to throw it away)."""

    def __init__(self):
        # Guards the fields below: a Start takes the slot and sets its owner and Cancel in one
        # step, and a Cancel and the worker's choice to register (or discard) never interleave.
        self._lock = threading.Lock()
        self._running = False                   # a run of this tab holds the slot (Start to worker's end)
        self._registering = False               # the current run's model is being (or was) registered
        self._name: str | None = None           # the current run's model name
        self.cancel_event = threading.Event()  # the current run's Cancel button (a new one per run)
        self._owner: str | None = None          # the session that started it

    @staticmethod
    def _session(request) -> str | None:
        return getattr(request, "session_hash", None)

    def cancel(self, request: gr.Request = None) -> str:
        with self._lock:
            if not self._running:
                if training.training_running():  # started elsewhere in this process, not by a page
                    return "Only the page that started this training can cancel it."
                return "Nothing is training."
            if self._session(request) != self._owner:
                return "Only the page that started this training can cancel it."
            if self._registering:  # too late: the worker has chosen to keep the model
                return (f"Too late to cancel: the run has finished and **{self._name}** is already saved "
                        "(the name is taken).")
            self.cancel_event.set()
            return "Cancelling: the run stops after the current step and nothing of it is kept."

    ALREADY_RUNNING = "A training is already running; wait for it to finish or cancel it first."

    def _arguments(self, source, archive, architecture, epochs, lr, name, size=SMALL):
        name = (name or "").strip()
        training.check_model_name(name)
        out = models.user_models_dir() / name
        recipes.check_output_folder(out)
        try:
            epochs = int(epochs)
            lr = float(lr)
        except (TypeError, ValueError, OverflowError):
            raise training.TrainingInputError("Epochs and learning rate must be numbers.") from None
        if not 1 <= epochs <= MAX_EPOCHS:
            raise training.TrainingInputError(f"Choose between 1 and {MAX_EPOCHS} epochs.")
        if not 0 < lr < 10:
            raise training.TrainingInputError("Choose a learning rate between 0 and 10 (for example 0.01).")
        if source == DIGITS and size not in DIGITS_SIZES:
            raise training.TrainingInputError(f"Choose a model size: {SMALL} or {TINY}.")
        if source != DIGITS and not archive:
            raise training.TrainingInputError("Upload a .zip with one folder of images per class first, or choose "
                                              "the handwritten digits.")
        return name, out, epochs, lr

    def check(self, source, archive, architecture, epochs, lr, name, size=SMALL) -> None:
        """The Start button's quick first event: a bad request (a name that is taken, no zip, a
        training already running) is refused here in one sentence, a toast. This event has no
        outputs, so Gradio marks none of them with an "Error" badge; the training event runs
        only when this one succeeds (``.success``)."""
        try:
            self._arguments(source, archive, architecture, epochs, lr, name, size)
        except training.TrainingInputError as error:
            raise user_error(str(error)) from error
        if self._running or training.training_running():
            raise user_error(self.ALREADY_RUNNING)

    # How often the page's generator looks whether the worker is still alive.
    WORKER_POLL_S = 1.0

    def train(self, source, archive, architecture, epochs, lr, name, size=SMALL, progress=gr.Progress(),
              request: gr.Request = None):
        """A generator: (status, curves figure, result markdown, confusion
        figure, samples figure, download) after each epoch and at the end.
        ``size`` (SMALL or TINY) is the digits Swin's; an upload ignores it.

        A bad request raises gr.Error (the page checks it first, :meth:`check`);
        a run that fails ends with its one sentence in the status, not an
        error on every output.

        The worker thread trains and registers the model, so a page that goes
        away does not lose it; closing the generator (a disconnect) stops the
        run after the current step, keeping the best epoch so far. Cancel
        (:meth:`cancel`) stops it too, and the worker deletes what the run
        wrote: a cancelled run takes no name."""
        self.check(source, archive, architecture, epochs, lr, name, size)
        name, out, epochs, lr = self._arguments(source, archive, architecture, epochs, lr, name, size)
        cancel, gone = threading.Event(), threading.Event()  # the Cancel button; the page went away
        with self._lock:  # one step: two Starts that both passed check() cannot both take the slot
            if self._running or training.training_running():
                raise user_error(self.ALREADY_RUNNING)
            self._running, self._registering = True, False
            self.cancel_event, self._owner, self._name = cancel, self._session(request), name
        events: queue.Queue = queue.Queue()
        common = dict(on_epoch=lambda m: events.put(("epoch", m)),
                      should_stop=lambda: cancel.is_set() or gone.is_set(), progress=False)

        def work():
            final = None
            try:
                final = run_and_keep()
            finally:  # the slot is free before the page hears the end: a new Start is accepted then
                with self._lock:
                    self._running = self._registering = False
                if final is not None:
                    events.put(final)

        def run_and_keep() -> tuple:
            try:
                if source == DIGITS:
                    swin = TINY_DIGITS_SWIN if size == TINY else DIGITS_SWIN
                    run = training.scratch(out, "digits", epochs=epochs, lr=lr, **DIGITS_RECIPE, **swin,
                                           description=f"a {size.split()[0]} Swin Transformer trained here "
                                                       "from scratch on the handwritten digits",
                                           **common)
                else:
                    run = training.finetune(archive, out, architecture, epochs=epochs, lr=lr,
                                            description=f"{architecture} fine-tuned here on "
                                                        f"{Path(str(archive)).name}",
                                            **common)
            except training.TrainingInputError as error:
                return "error", str(error)
            except Exception as error:  # the page must hear about any failure, in one sentence
                return "error", f"Training failed ({type(error).__name__}: {error}); nothing was saved."
            # Cancel: discard what the run wrote, however late it came (the loop stops looking after
            # its last step, so a Cancel during the final validation or the writing is seen only here).
            # Under the lock: a Cancel after this point is told that the model is kept.
            with self._lock:
                discard = cancel.is_set()
                self._registering = not discard
            if discard:
                shutil.rmtree(run.out, ignore_errors=True)
                return "cancelled", run
            try:  # here, not in the page's generator: a page that went away must not lose the model
                models.register_model_folder(run.out, name, replace=False)
            except (ValueError, OSError) as error:
                return "error", (f"The model was saved in {run.out} but could not be added to the "
                                 f"architecture list ({error}).")
            return "done", run

        worker = threading.Thread(target=work, name="train", daemon=True)
        try:
            worker.start()
        except BaseException:  # no worker: give the slot back
            with self._lock:
                self._running = False
            raise
        finished = False
        try:
            what = "the digits" if source == DIGITS else Path(str(archive)).name
            progress(0, desc=f"Preparing {what}")
            yield (f"Preparing {what}…", None, "", None, None, None)
            history: list[dict] = []
            while True:
                try:
                    kind, value = events.get(timeout=self.WORKER_POLL_S)
                except queue.Empty:
                    if worker.is_alive() or not events.empty():
                        continue
                    finished = True
                    yield failed(history, "Training stopped unexpectedly; nothing new was added.")
                    return
                if kind == "epoch":
                    history.append(value)
                    progress((len(history), epochs), desc=f"Epoch {len(history)}/{epochs}", unit="epochs")
                    yield (epoch_status(value, epochs), plots.curves_figure(curve_metrics(history)), "", None, None,
                           None)
                elif kind == "error":
                    finished = True
                    yield failed(history, value)
                    return
                elif kind == "cancelled":
                    finished = True
                    yield (cancelled_status(name, history, epochs),
                           plots.curves_figure(curve_metrics(history)) if history else None, "", None, None, None)
                    return
                else:
                    finished = True
                    run = value
                    m = run.metrics
                    archive_path = zip_folder(run.out)
                    yield (finished_status(name, m), plots.curves_figure(m), result_markdown(m),
                           plots.confusion_figure(m), plots.samples_figure(run.samples), archive_path)
                    return
        finally:
            if not finished:  # the page went away (GeneratorExit) or the generator failed: stop the run
                gone.set()

    @staticmethod
    def architecture_updates(current):
        """Refresh an architecture chooser of another tab (new models appear), keeping its value."""
        from demo.ui import architecture_choices  # the labels the other tabs use

        return gr.update(choices=architecture_choices(), value=current)


def failed(history: list[dict], message: str) -> tuple:
    """The outputs of a run that failed: its sentence in the status (logged as a refusal is), the curve so far."""
    gate.refuse(message, "train")  # the one log line, as for every refusal; the page gets the status line
    return (f"⚠️ {message}", plots.curves_figure(curve_metrics(history)) if history else None, "", None, None, None)


def curve_metrics(history: list[dict]) -> dict:
    return {"epochs": history, "train_loss": [h["train_loss"] for h in history],
            "val_loss": [h["val_loss"] for h in history], "val_accuracies": [h["val_accuracy"] for h in history],
            "lr": [h["lr"] for h in history], "val_accuracy": max(h["val_accuracy"] for h in history)}


def epoch_status(m: dict, epochs: int) -> str:
    partial = " (stopped during this epoch)" if m.get("partial") else ""
    return (f"Epoch {m['epoch']}/{epochs}{partial}: train loss {m['train_loss']:.4f}, validation loss "
            f"{m['val_loss']:.4f}, validation accuracy **{m['val_accuracy']:.1%}** ({m['seconds']:.1f} s)")


def cancelled_status(name: str, history: list[dict], epochs: int) -> str:
    done = sum(1 for h in history if not h.get("partial"))
    return (f"Cancelled after {done} of {epochs} epochs: nothing was saved and the name **{name}** is still "
            "free.")


def finished_status(name: str, m: dict) -> str:
    how = "Stopped early; kept" if m["cancelled"] else "Done:"  # stopped: the page went away
    return (f"{how} **{name}** (best epoch {m['best_epoch']}, validation accuracy {m['val_accuracy']:.1%}, "
            f"{m['seconds']:.0f} s). It is now in the architecture list of every tab.")


def result_markdown(m: dict) -> str:
    rows = "\n".join(f"| {c} | {'–' if a is None else f'{a:.1%}'} |" for c, a in m["per_class_accuracy"].items())
    skipped = f"\n\n{m['skipped_files']} unreadable files were skipped." if m.get("skipped_files") else ""
    return f"| class | validation accuracy |\n|---|---|\n{rows}{skipped}"


DOWNLOAD_KEEP_S = 3600


def zip_folder(folder: Path) -> str:
    """The output folder as a zip for download, written once into Gradio's upload folder.

    There Gradio serves it without a copy (a copy in /tmp was never removed), and
    :func:`demo.gate.keep_for` keeps it from the upload sweeper for an hour: a fine-tuned
    model's zip can be larger than the folder's whole bound.
    """
    target = gate.upload_folder() / f"trained-{secrets.token_hex(8)}" / f"{folder.name}.zip"
    gate.keep_for(target, DOWNLOAD_KEEP_S)  # before writing: a sweep may run meanwhile
    target.parent.mkdir(parents=True, exist_ok=True)
    return shutil.make_archive(str(target.with_suffix("")), "zip", root_dir=folder)


def source_controls(source) -> tuple[dict, dict, dict, dict]:
    """Updates of (zip, architecture to fine-tune, digits size, learning rate) for the data
    source chosen: only the controls that apply to it are shown, with its usual learning rate."""
    digits = source == DIGITS
    return (gr.update(visible=not digits), gr.update(visible=not digits), gr.update(visible=digits),
            gr.update(value=0.001 if digits else 0.01))


def build_train_tab(architecture_dropdowns: list | None = None) -> TrainCallbacks:
    """The tab's layout and events; call inside ``with gr.Tab("Train")``.
    ``architecture_dropdowns`` (of other tabs) get the new model when a run ends."""
    callbacks = TrainCallbacks()
    gr.Markdown("Fine-tune a model on your own images (a .zip with one folder per class, or `train/` and `val/`), "
                "or train a small Swin Transformer from scratch on handwritten digits. The model is kept in the "
                "user-models folder and appears in every tab's architecture list.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            source = gr.Radio([DIGITS, UPLOAD], value=DIGITS, label="Data", elem_id="train-source")
            # Shown for the source that uses them (source_controls); the digits come first.
            archive = gr.File(label="Zip of class folders", file_types=[".zip"], type="filepath",
                              elem_id="train-zip", visible=False)
            size = gr.Radio(list(DIGITS_SIZES), value=SMALL, label="Digits Swin size (tiny: a quick try)",
                            elem_id="train-size")
            architecture = gr.Dropdown(finetune_choices(), value=models.OFFLINE_DEFAULT,
                                       label="Architecture to fine-tune (for your images)",
                                       elem_id="train-architecture", visible=False)
            with gr.Row():
                epochs = gr.Number(5, precision=0, minimum=1, maximum=MAX_EPOCHS, label="Epochs",
                                   elem_id="train-epochs")
                lr = gr.Number(0.001, minimum=0, label="Learning rate", elem_id="train-lr")
            name = gr.Textbox("my_model", label="Model name", elem_id="train-name")
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_id="train-start")
                cancel = gr.Button("Cancel", elem_id="train-cancel")
        with gr.Column(scale=2):
            status = gr.Markdown("", elem_id="train-status")
            result = gr.Markdown("", elem_id="train-result")
            download = gr.File(label="Download the model folder (zip)", elem_id="train-download")
    # The figures full width, one below the other, so that they are shown at (about) their own size
    # and their text can be read; each has its own title, so no label covers it.
    curves = gr.Plot(label="Curves", show_label=False, format="png", elem_id="train-curves")
    confusion = gr.Plot(label="Confusion matrix", show_label=False, format="png", elem_id="train-confusion")
    samples = gr.Plot(label="Validation images", show_label=False, format="png", elem_id="train-samples")
    guard_train_arguments(source, architecture, epochs, lr, name, size)
    source.change(source_controls, [source], [archive, architecture, size, lr], show_progress="hidden",
                  api_visibility="private")
    inputs = [source, archive, architecture, epochs, lr, name, size]
    # A quick check first, with no outputs: a refusal is one toast, not an "Error" badge on each output.
    run = start.click(callbacks.check, inputs, None, api_visibility="private", show_progress="hidden",
                      concurrency_limit=None)
    run = run.success(callbacks.train, inputs, [status, curves, result, confusion, samples, download],
                      api_visibility="private", concurrency_id="train", concurrency_limit=4)
    cancel.click(callbacks.cancel, None, [status], api_visibility="private", concurrency_limit=None,
                 show_progress="hidden")
    refresh = [architecture, *(architecture_dropdowns or [])]
    for dropdown in refresh:
        run.then(callbacks.architecture_updates, [dropdown], [dropdown], api_visibility="private",
                 show_progress="hidden")
    return callbacks
