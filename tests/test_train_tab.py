"""The Train tab's callbacks, without a browser: a short digits run streams
its curve each epoch, registers the model and offers the folder as a zip;
Cancel keeps a checkpoint; bad requests get one sentence."""
import zipfile

import gradio as gr
import pytest
import torch

import models
import training
from demo import train_tab
from training import recipes

TINY = dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4, patch_size=2, image_size=16,
            drop_path_rate=0.0)


@pytest.fixture
def tab(monkeypatch, tmp_path):
    monkeypatch.setenv("APP_USER_MODELS", str(tmp_path / "user_models"))
    monkeypatch.setattr(train_tab, "DIGITS_SWIN", TINY)  # the plumbing, not the model, is under test
    callbacks = train_tab.TrainCallbacks()
    yield callbacks
    for name in ("tab_digits", "tab_cancelled"):
        models.forget_model(name)


def no_progress(*args, **kwargs):
    return None


def test_digits_run_streams_curves_and_registers_the_model(tab, tmp_path):
    outputs = list(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 2, 0.002, "tab_digits",
                             progress=no_progress))
    epochs = [o for o in outputs if o[0].startswith("Epoch")]
    assert [o[0].split(":")[0] for o in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    assert all(o[1] is not None for o in epochs)  # a curve after every epoch
    status, curves, result, confusion, samples, download = outputs[-1]
    assert status.startswith("Done: **tab_digits**") and "| 0 |" in result
    assert curves is not None and confusion is not None and samples is not None
    assert {"model.safetensors", "config.json", "metrics.json"} <= set(zipfile.ZipFile(download).namelist())
    assert (tmp_path / "user_models" / "tab_digits" / "model.safetensors").is_file()
    assert "tab_digits" in models.list_models() and models.weights_status("tab_digits") == "trained"
    model = models.create_model("tab_digits", pretrained=True)
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
    assert ("tab_digits · trained here", "tab_digits") in tab.architecture_updates("efficientnet_lite0")["choices"]
    # the same name again: refused, the model kept
    with pytest.raises(gr.Error, match="taken"):
        next(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.002, "tab_digits", progress=no_progress))
    # a fresh start of the app finds it again
    models.forget_model("tab_digits")
    assert "tab_digits" in models.register_user_models()


def test_cancel_keeps_the_best_checkpoint_so_far(tab, tmp_path):
    run = tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 5, 0.002, "tab_cancelled", progress=no_progress)
    assert next(run)[0].startswith("Preparing")
    tab.cancel_event.set()  # as the Cancel button does, before the first step ends
    outputs = list(run)
    assert outputs[-1][0].startswith("Cancelled; kept **tab_cancelled**")
    assert (tmp_path / "user_models" / "tab_cancelled" / "model.safetensors").is_file()
    assert tab.cancel() == "Nothing is training."


@pytest.mark.parametrize("source, archive, name, match", [
    (train_tab.DIGITS, None, "swin_t", "taken"),
    (train_tab.DIGITS, None, "../evil", "not a usable model name"),
    (train_tab.UPLOAD, None, "mine", "Upload a .zip"),
])
def test_bad_requests_get_one_sentence(tab, source, archive, name, match):
    with pytest.raises(gr.Error, match=match) as info:
        next(tab.train(source, archive, "efficientnet_lite0", 1, 0.01, name, progress=no_progress))
    assert info.value.message.endswith(".") and "\n" not in info.value.message


def test_a_second_training_is_refused(tab):
    with recipes.busy():
        with pytest.raises(gr.Error, match="already running"):
            next(tab.train(train_tab.DIGITS, None, "efficientnet_lite0", 1, 0.01, "second", progress=no_progress))
