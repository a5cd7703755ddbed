"""The Train tab's callbacks, without a browser: a short digits run streams
its curve each epoch, registers the model and offers the folder as a zip;
Cancel keeps a checkpoint; bad requests get one sentence."""
import json
import zipfile

import gradio as gr
import pytest
import torch

import models
import training
from demo import gate, train_tab
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
    for name in ("tab_digits", "tab_cancelled"):
        models.forget_model(name)


def no_progress(*args, **kwargs):
    return None


def test_digits_run_streams_curves_and_registers_the_model(tab, tmp_path):
    outputs = list(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 2, 0.002, "tab_digits", TINY,
                             progress=no_progress))
    epochs = [o for o in outputs if o[0].startswith("Epoch")]
    assert [o[0].split(":")[0] for o in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    assert all(o[1] is not None for o in epochs)  # a curve after every epoch
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
    # the same name again: refused, the model kept
    with pytest.raises(gr.Error, match="taken"):
        next(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.002, "tab_digits", TINY,
                       progress=no_progress))
    # a fresh start of the app finds it again
    models.forget_model("tab_digits")
    assert "tab_digits" in models.register_user_models()


def test_cancel_keeps_the_best_checkpoint_so_far(tab, tmp_path):
    run = tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 5, 0.002, "tab_cancelled", TINY,
                    progress=no_progress)
    assert next(run)[0].startswith("Preparing")
    tab.cancel_event.set()  # as the Cancel button does, before the first step ends
    outputs = list(run)
    assert outputs[-1][0].startswith("Cancelled; kept **tab_cancelled**")
    assert (tmp_path / "user_models" / "tab_cancelled" / "model.safetensors").is_file()
    assert tab.cancel() == "Nothing is training."


@pytest.mark.parametrize("source, archive, name, size, match", [
    (train_tab.DIGITS, None, "swin_t", TINY, "taken"),
    (train_tab.DIGITS, None, "../evil", TINY, "not a usable model name"),
    (train_tab.UPLOAD, None, "mine", TINY, "Upload a .zip"),
    (train_tab.DIGITS, None, "mine", "huge", "Choose a model size"),
])
def test_bad_requests_get_one_sentence(tab, source, archive, name, size, match):
    with pytest.raises(gr.Error, match=match) as info:
        next(tab.train(source, archive, "efficientnet_lite0", 1, 0.01, name, size, progress=no_progress))
    assert info.value.message.endswith(".") and "\n" not in info.value.message


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
    with pytest.raises(gr.Error, match="stopped by the test"):
        list(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 3, 0.001, "tab_small", progress=no_progress))
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
    with pytest.raises(gr.Error, match="outside its folder"):
        list(tab.train(train_tab.UPLOAD, str(evil), "efficientnet_lite0", 1, 0.01, "tab_evil", progress=no_progress))
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
