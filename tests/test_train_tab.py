"""The Train tab's callbacks, without a browser: a short digits run streams
its curve each epoch, registers the model and offers the folder as a zip;
Cancel keeps a checkpoint; bad requests get one sentence."""
import json
import threading
import zipfile
from pathlib import Path

import gradio as gr
import pytest
import torch

import models
import training
from demo import gate, train_tab, ui
from training import recipes

from conftest import ROOT

TINY = train_tab.TINY  # the plumbing, not the model, is under test: the tab's quick-try size


# Every training here on one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tab(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_USER_MODELS", str(tmp_path / "user_models"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))  # where the download zip is written
    callbacks = train_tab.TrainCallbacks()
    yield callbacks
    for name in ("tab_digits", "tab_cancelled", "tab_gone"):
        models.forget_model(name)


def no_progress(*args, **kwargs):
    return None


def test_digits_run_streams_curves_and_registers_the_model(tab, tmp_path):
    outputs = list(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 2, 0.002, "tab_digits", TINY,
                             progress=no_progress))
    epochs = [o for o in outputs if o[0].startswith("Epoch")]
    assert [o[0].split(":")[0] for o in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    assert all(o[1] is not None for o in epochs)  # a curve after every epoch
    # ... with that many epochs' points: the curve grows while the run goes on
    assert [len(o[1].axes[0].lines[0].get_xdata()) for o in epochs] == [1, 2]
    status, curves, result, confusion, samples, download = outputs[-1]
    assert status.startswith("Done: **tab_digits**") and "| 0 |" in result
    assert curves is not None and confusion is not None and samples is not None
    assert {"model.safetensors", "config.json", "metrics.json"} <= set(zipfile.ZipFile(download).namelist())
    # Written once where Gradio serves it from, and kept from the sweeper for a while.
    assert download.startswith(str(tmp_path / "uploads")) and download in gate.kept_files()
    assert (tmp_path / "user_models" / "tab_digits" / "model.safetensors").is_file()
    assert "tab_digits" in models.list_models() and models.weights_status("tab_digits") == "trained"
    config = models.read_model_folder(tmp_path / "user_models" / "tab_digits")["inside_classifier"]["config"]
    assert config["embed_dim"] == train_tab.TINY_DIGITS_SWIN["embed_dim"]  # the size chosen was trained
    model = models.create_model("tab_digits", pretrained=True)
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
    assert ("tab_digits · trained here", "tab_digits") in tab.architecture_updates("efficientnet_lite0")["choices"]
    # Its info line says what it is once: its name, trained here on the digits, its validation accuracy.
    info = ui.architecture_info("tab_digits")
    accuracy = json.loads((tmp_path / "user_models" / "tab_digits" / "metrics.json").read_text())["val_accuracy"]
    assert info.count("tab_digits") == 1 and "pretrained" not in info, info
    assert "trained here from scratch on the handwritten digits" in info and f"{accuracy:.1%}" in info, info
    assert ui.weights_note("tab_digits", True) == "trained here"
    assert ui.weights_note("efficientnet_lite0", True) == "pretrained weights"
    # the same name again: refused, the model kept
    with pytest.raises(gr.Error, match="taken"):
        next(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.002, "tab_digits", TINY,
                       progress=no_progress))
    # a fresh start of the app finds it again
    models.forget_model("tab_digits")
    assert "tab_digits" in models.register_user_models()


def cancel_soon(tab, run):
    """Press Cancel as the page does: once the run holds the trainer, from the page that started it."""
    assert next(run)[0].startswith("Preparing")
    wait_until(training.training_running)
    message = tab.cancel()
    assert message.startswith("Cancelling") and "nothing" in message, message
    return list(run)


def test_cancel_discards_the_run_and_the_name_stays_free(tab, tmp_path):
    for attempt in range(2):  # the same name again after a Cancel: accepted, not "taken"
        outputs = cancel_soon(tab, tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 5, 0.002,
                                             "tab_cancelled", TINY, progress=no_progress))
        status, curves, result, confusion, samples, download = outputs[-1]
        assert status.startswith("Cancelled after") and "nothing was saved" in status, status
        assert "tab_cancelled" in status and (result, confusion, samples, download) == ("", None, None, None)
        assert not (tmp_path / "user_models" / "tab_cancelled").exists()
        assert not [p for p in (tmp_path / "user_models").glob("*")]  # no staging folder left either
        assert "tab_cancelled" not in models.list_models()
        wait_until(lambda: not training.training_running())
    assert tab.cancel() == "Nothing is training."


class Page:
    """A stand-in for the gr.Request Gradio passes: only the session matters here."""

    def __init__(self, session_hash):
        self.session_hash = session_hash


def wait_until(condition, seconds=60.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def test_a_page_that_goes_away_cancels_its_run_and_the_model_is_still_registered(tab, tmp_path):
    run = tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 5, 0.002, "tab_gone", TINY,
                    progress=no_progress, request=Page("a"))
    assert next(run)[0].startswith("Preparing")
    run.close()  # Gradio closes the generator when the browser disconnects (GeneratorExit)
    assert not tab.cancel_event.is_set()  # stopped, but nobody pressed Cancel: the run is kept
    # The run stops after its current step and the worker registers the model itself:
    # offered now, not only after a restart.
    wait_until(lambda: "tab_gone" in models.list_models())
    wait_until(lambda: not training.training_running())
    assert models.weights_status("tab_gone") == "trained"
    assert (tmp_path / "user_models" / "tab_gone" / "model.safetensors").is_file()


def test_only_the_page_that_started_a_training_can_cancel_it(tab, monkeypatch):
    import threading

    release = threading.Event()

    def scratch(out, *args, should_stop, **kwargs):
        release.wait(30)
        raise training.TrainingInputError("stopped by the test.")

    def busy_scratch(*args, **kwargs):
        with recipes.busy():
            return scratch(*args, **kwargs)

    monkeypatch.setattr(training, "scratch", busy_scratch)
    run = tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01, "tab_other", TINY,
                    progress=no_progress, request=Page("starter"))
    next(run)
    try:
        for _ in range(200):  # the worker takes the lock
            if training.training_running():
                break
            __import__("time").sleep(0.01)
        assert tab.cancel(Page("someone else")) == "Only the page that started this training can cancel it."
        assert not tab.cancel_event.is_set()
        assert tab.cancel(Page("starter")).startswith("Cancelling")
        assert tab.cancel_event.is_set()
    finally:
        release.set()
    assert_fails_in_the_status(list(run), "stopped by the test")


def finished_run(out, cancelled=False):
    """What scratch returns after its last step: the folder written, the metrics of a whole run."""
    out = Path(out)
    out.mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"x")
    return recipes.RunResult(out, {"cancelled": cancelled, "best_epoch": 1, "val_accuracy": 0.5, "seconds": 1,
                                   "epochs": [], "train_loss": [], "val_loss": [], "val_accuracies": [], "lr": [],
                                   "classes": [], "confusion_matrix": [], "per_class_accuracy": {}}, None)


@pytest.fixture
def quiet_results(monkeypatch):
    """No zip or figures for the fake runs' results (their metrics are empty)."""
    monkeypatch.setattr(train_tab, "zip_folder", lambda folder: None)
    for figure in ("curves_figure", "confusion_figure", "samples_figure"):
        monkeypatch.setattr(train_tab.plots, figure, lambda *args: None)


def test_a_cancel_after_the_last_step_still_discards_the_run(tab, monkeypatch, tmp_path, quiet_results):
    """The loop stops asking should_stop after its last step: a Cancel during the final validation or
    while the files are written must discard the run all the same (it was registered)."""
    writing, written = threading.Event(), threading.Event()
    registered = []

    def scratch(out, *args, should_stop, **kwargs):
        with recipes.busy():
            writing.set()  # past the last step: should_stop is not asked again
            assert written.wait(30)
            return finished_run(out, cancelled=False)

    monkeypatch.setattr(training, "scratch", scratch)
    monkeypatch.setattr(models, "register_model_folder", lambda out, name, replace=False: registered.append(name))
    run = tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01, "tab_late", TINY,
                    progress=no_progress, request=Page("starter"))
    assert next(run)[0].startswith("Preparing")
    try:
        assert writing.wait(30)
        message = tab.cancel(Page("starter"))
        assert message.startswith("Cancelling") and "nothing" in message, message
    finally:
        written.set()
    status = list(run)[-1][0]
    assert status.startswith("Cancelled after") and "nothing was saved" in status, status
    assert registered == [] and not (tmp_path / "user_models" / "tab_late").exists()
    assert tab.cancel(Page("starter")) == "Nothing is training."


def test_a_cancel_once_the_model_is_being_registered_is_told_it_is_kept(tab, monkeypatch, tmp_path,
                                                                        quiet_results):
    """Registration has begun: a Cancel cannot take it back, and says so in one sentence
    instead of promising that nothing is kept."""
    registering, release = threading.Event(), threading.Event()
    registered = []

    def scratch(out, *args, should_stop, **kwargs):
        with recipes.busy():
            return finished_run(out)

    def register(out, name, replace=False):
        registering.set()
        assert release.wait(30)
        registered.append(name)

    monkeypatch.setattr(training, "scratch", scratch)
    monkeypatch.setattr(models, "register_model_folder", register)
    run = tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01, "tab_kept", TINY,
                    progress=no_progress, request=Page("starter"))
    assert next(run)[0].startswith("Preparing")
    try:
        assert registering.wait(30)
        message = tab.cancel(Page("starter"))
    finally:
        release.set()
    assert message.startswith("Too late to cancel") and "**tab_kept** is already saved" in message, message
    assert "taken" in message and message.endswith(".") and "\n" not in message and "nothing" not in message
    assert not tab.cancel_event.is_set()
    assert list(run)[-1][0].startswith("Done: **tab_kept**")
    assert registered == ["tab_kept"] and (tmp_path / "user_models" / "tab_kept").is_dir()


def test_two_starts_that_both_passed_the_check_train_once_and_the_first_page_can_cancel(tab, monkeypatch,
                                                                                         quiet_results):
    """Both Starts pass check() before the first run's worker takes the trainer: the second is
    refused in one sentence and leaves the first run's owner and Cancel alone."""
    started, release = threading.Event(), threading.Event()
    calls = []

    def scratch(out, *args, should_stop, **kwargs):
        calls.append(out)
        started.set()
        assert release.wait(30)  # the trainer is not taken yet
        with recipes.busy():
            return finished_run(out, cancelled=should_stop())

    monkeypatch.setattr(training, "scratch", scratch)
    monkeypatch.setattr(models, "register_model_folder", lambda *args, **kwargs: None)
    arguments = (train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01)
    tab.check(*arguments, "tab_first", TINY)
    tab.check(*arguments, "tab_second", TINY)  # both checked before either has started
    first = tab.train(*arguments, "tab_first", TINY, progress=no_progress, request=Page("first"))
    second = tab.train(*arguments, "tab_second", TINY, progress=no_progress, request=Page("second"))
    try:
        assert next(first)[0].startswith("Preparing")
        assert started.wait(30) and not training.training_running()
        with pytest.raises(gr.Error) as info:
            next(second)
        assert info.value.message == "A training is already running; wait for it to finish or cancel it first."
        assert tab.cancel(Page("second")) == "Only the page that started this training can cancel it."
        assert tab.cancel(Page("first")).startswith("Cancelling")
    finally:
        release.set()
    assert list(first)[-1][0].startswith("Cancelled after")
    assert len(calls) == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_that_dies_without_a_word_ends_the_page_in_one_sentence(tab, monkeypatch):
    def scratch(*args, **kwargs):
        raise SystemExit  # a BaseException: the worker's except clauses let it through

    monkeypatch.setattr(training, "scratch", scratch)
    monkeypatch.setattr(train_tab.TrainCallbacks, "WORKER_POLL_S", 0.05)
    assert_fails_in_the_status(list(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01, "tab_dies",
                                              TINY, progress=no_progress)), "stopped unexpectedly")


def test_a_model_folder_the_registry_refuses_gets_one_sentence(tab, monkeypatch, tmp_path):
    def scratch(out, *args, **kwargs):
        return recipes.RunResult(out=out, metrics={}, train=None)

    def register(*args, **kwargs):
        raise ValueError("a model named tab_refused exists already")

    monkeypatch.setattr(training, "scratch", scratch)
    monkeypatch.setattr(models, "register_model_folder", register)
    outputs = list(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01, "tab_refused", TINY,
                             progress=no_progress))
    assert_fails_in_the_status(outputs, "could not be added to the architecture list")
    assert "exists already" in outputs[-1][0]


def assert_fails_in_the_status(outputs, says):
    """A run that fails ends (no gr.Error: Gradio would badge every output "Error") with its one
    sentence in the status line and nothing else to show."""
    status, curves, result, confusion, samples, download = outputs[-1]
    assert says in status and status.endswith(".") and "\n" not in status, status
    assert (result, confusion, samples, download) == ("", None, None, None)


@pytest.mark.parametrize("source, archive, name, size, match", [
    (train_tab.DIGITS, None, "swin_t", TINY, "taken"),
    (train_tab.DIGITS, None, "../evil", TINY, "not a usable model name"),
    (train_tab.UPLOAD, None, "mine", TINY, "Upload a .zip"),
    (train_tab.DIGITS, None, "mine", "huge", "Choose a model size"),
])
def test_bad_requests_get_one_sentence(tab, source, archive, name, size, match):
    for call in (lambda: tab.check(source, archive, "efficientnet_lite0", 1, 0.01, name, size),  # the page's
                 lambda: next(tab.train(source, archive, "efficientnet_lite0", 1, 0.01, name, size,
                                        progress=no_progress))):  # the private event called by its index
        with pytest.raises(gr.Error, match=match) as info:
            call()
        assert info.value.message.endswith(".") and "\n" not in info.value.message
        assert info.value.print_exception is False


def test_start_checks_first_in_an_event_without_outputs_so_a_refusal_badges_none(monkeypatch, tmp_path):
    """Gradio 6 marks every output of an event that raises with an "Error" badge: Start's first
    event (the check) has no outputs, and training follows only on its success."""
    monkeypatch.setenv("APP_USER_MODELS", str(tmp_path / "user_models"))
    with gr.Blocks() as page:
        callbacks = train_tab.build_train_tab()
    config = page.get_config_file()
    dependencies = {d["id"]: d for d in config["dependencies"]}
    start = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "train-start")
    first = [d for d in dependencies.values() if [start, "click"] in [list(t) for t in d["targets"]]]
    assert len(first) == 1 and first[0]["outputs"] == [], first
    assert page.fns[first[0]["id"]].fn == callbacks.check
    training_event = [d for d in dependencies.values() if d["trigger_after"] == first[0]["id"]]
    assert len(training_event) == 1 and training_event[0]["trigger_only_on_success"]
    assert page.fns[training_event[0]["id"]].fn == callbacks.train and len(training_event[0]["outputs"]) == 6


def test_small_is_the_bundled_swin_digits_recipe(tab, monkeypatch):
    """The default size trains the bundled swin_digits' configuration and recipe
    (checked on the arguments; a real run takes far longer)."""
    bundled = json.loads((ROOT / "assets" / "models" / "swin_digits" / "config.json").read_text())
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in bundled["inside_classifier"]["config"].items()}
    assert dict(config, image_size=bundled["pretrained_cfg"]["input_size"][-1]) == train_tab.DIGITS_SWIN
    calls = []

    def scratch(out, dataset, **kwargs):
        calls.append(kwargs)
        raise training.TrainingInputError("stopped by the test.")
    monkeypatch.setattr(training, "scratch", scratch)
    assert_fails_in_the_status(list(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 3, 0.001, "tab_small",
                                              progress=no_progress)), "stopped by the test")
    assert {k: calls[0][k] for k in train_tab.DIGITS_SWIN} == train_tab.DIGITS_SWIN
    assert {k: calls[0][k] for k in train_tab.DIGITS_RECIPE} == train_tab.DIGITS_RECIPE


def test_a_second_training_is_refused(tab):
    with recipes.busy():
        with pytest.raises(gr.Error, match="already running"):
            next(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01, "second", progress=no_progress))


def test_uploaded_zip_is_fine_tuned_and_a_bad_zip_refused(tab, tmp_path):
    from test_training import make_class_folder

    data = make_class_folder(tmp_path / "photos", per_class=3)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(data.rglob("*.jpg")):
            z.write(path, f"photos/{path.parent.name}/{path.name}")
    outputs = list(tab.train(train_tab.UPLOAD, str(archive), "efficientnet_lite0", 1, 0.01, "tab_zip",
                             progress=no_progress))
    try:
        assert outputs[-1][0].startswith("Done: **tab_zip**")
        assert models.get_spec("tab_zip").labels == ("cat", "coins", "rocket")
    finally:
        models.forget_model("tab_zip")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../x.png", b"x")
    assert_fails_in_the_status(list(tab.train(train_tab.UPLOAD, str(evil), "efficientnet_lite0", 1, 0.01,
                                              "tab_evil", progress=no_progress)), "outside its folder")
    assert not (tmp_path / "user_models" / "tab_evil").exists()


BAD_TRAIN_ARGUMENTS = [  # (argument, value, what the sentence names): what reaches the private event by its index
    ("epochs", float("nan"), "epochs must be a whole number"), ("epochs", "abc", "epochs must be a whole number"),
    ("epochs", float("inf"), "epochs must be a whole number"), ("epochs", 0, "epochs must be a whole number"),
    ("epochs", 10**400, "epochs must be a whole number"), ("lr", float("nan"), "learning rate must be a number"),
    ("lr", "abc", "learning rate must be a number"), ("lr", 11, "learning rate must be a number"),
    ("name", ["a"], "model name must be text"), ("name", "x" * 500, "model name must be text"),
    ("size", "huge", "model size must be one of"), ("source", 3, "data must be one of"),
    ("architecture", "nope", "architecture must be one of"), ("architecture", None, None),
]


@pytest.mark.parametrize("argument, value, says", BAD_TRAIN_ARGUMENTS,
                         ids=[f"{a}-{str(v)[:12]}" for a, v, _ in BAD_TRAIN_ARGUMENTS])
def test_the_train_event_s_arguments_are_checked_at_the_boundary(argument, value, says):
    parts = dict(source=gr.Radio([train_tab.DIGITS, train_tab.UPLOAD]), architecture=gr.Dropdown(),
                 epochs=gr.Number(), lr=gr.Number(), name=gr.Textbox(), size=gr.Radio(list(train_tab.DIGITS_SIZES)))
    train_tab.guard_train_arguments(**parts)
    if says is None:  # None is the default
        assert parts[argument].preprocess(value) == models.OFFLINE_DEFAULT
        return
    with pytest.raises(gr.Error) as info:
        parts[argument].preprocess(value)
    message = info.value.message
    assert message.startswith(says) and message.endswith(".") and "\n" not in message and len(message) < 500, message
    assert info.value.print_exception is False


def test_train_refuses_infinite_epochs_in_one_sentence(tab):
    with pytest.raises(gr.Error, match="must be numbers") as info:
        next(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", float("inf"), 0.01, "mine", TINY,
                       progress=no_progress))
    assert info.value.print_exception is False


def test_the_download_zip_survives_a_sweep_while_the_folder_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    monkeypatch.setattr(gate, "_kept", {})
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(__import__("os").urandom(5000))  # incompressible
    sweeper = gate.UploadSweeper(tmp_path / "uploads", max_bytes=1000)  # smaller than one zip
    zips = [train_tab.zip_folder(model) for _ in range(gate.MAX_KEPT + 1)]
    sweeper.sweep()
    kept = sorted(str(p) for p in (tmp_path / "uploads").rglob("*.zip"))
    assert kept == sorted(zips[1:])  # the newest MAX_KEPT stay; the oldest is swept as usual


def train_page(monkeypatch, tmp_path):
    """The tab built in a page; (page, callbacks, component by elem_id without its "train-" prefix)."""
    monkeypatch.setenv("APP_USER_MODELS", str(tmp_path / "user_models"))
    with gr.Blocks() as page:
        callbacks = train_tab.build_train_tab()
    parts = {b.elem_id.removeprefix("train-"): b for b in page.blocks.values()
             if (getattr(b, "elem_id", None) or "").startswith("train-")}
    return page, callbacks, parts


def test_only_the_controls_of_the_chosen_data_source_are_shown(monkeypatch, tmp_path):
    page, _, parts = train_page(monkeypatch, tmp_path)
    shown = lambda updates: [u["visible"] for u in updates[:3]]  # noqa: E731 (zip, architecture, size)
    assert shown(train_tab.source_controls(train_tab.DIGITS)) == [False, False, True]
    assert shown(train_tab.source_controls(train_tab.UPLOAD)) == [True, True, False]
    assert train_tab.source_controls(train_tab.UPLOAD)[3]["value"] == 0.01
    # The page opens on the digits: the upload's controls start hidden.
    assert parts["source"].value == train_tab.DIGITS
    assert [parts[k].visible for k in ("zip", "architecture", "size")] == [False, False, True]
    # ... and a change of source updates them.
    change = [d for d in page.config["dependencies"] if [parts["source"]._id, "change"] in
              [list(t) for t in d["targets"]]]
    assert len(change) == 1 and change[0]["outputs"] == [parts[k]._id for k in ("zip", "architecture", "size", "lr")]


def test_the_run_s_figures_are_shown_full_width_without_labels_and_their_text_is_readable(monkeypatch, tmp_path):
    """At 1280 px the plots used to share a 2/3 column (confusion and samples half of it each), shrunk to a
    third of their size with a label over them: now each is full width, one below the other, drawn at
    most 1200 px wide (so shown about at its own size) with no text under 10 points."""
    import matplotlib.text
    from PIL import Image

    from training import plots

    _, _, parts = train_page(monkeypatch, tmp_path)
    for key in ("curves", "confusion", "samples"):
        plot, ancestors = parts[key], []
        while plot.parent is not None:
            plot = plot.parent
            ancestors.append(plot)
        assert ancestors and not parts[key].show_label and not any(isinstance(a, (gr.Row, gr.Column)) for a in ancestors), key
    history = [dict(epoch=e, train_loss=1 / e, val_loss=1.2 / e, val_accuracy=0.5 + e / 10, lr=0.001) for e in (1, 2)]
    figures = {"curves": plots.curves_figure(train_tab.curve_metrics(history))}
    for n in (10, 30):
        figures[f"confusion {n}"] = plots.confusion_figure(dict(confusion_matrix=[[3] * n] * n, best_epoch=1,
                                                                classes=[f"class {i}" for i in range(n)]))
    figures["samples"] = plots.samples_figure([(Image.new("RGB", (16, 16)), str(i % 10), str(i % 3))
                                               for i in range(16)])
    for what, fig in figures.items():
        assert fig.get_figwidth() * fig.dpi <= plots.MAX_WIDTH_PX, what
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()]
        assert min(sizes) >= plots.SMALLEST_FONT, (what, min(sizes))
