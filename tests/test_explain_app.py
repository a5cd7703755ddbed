"""The /explain endpoint through gradio_client against ``python app.py``
(conftest's ``app_server``: Hub offline), and the explain / compare tabs'
callbacks called directly."""
import json

import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import ROOT

CAT = ROOT / "assets" / "examples" / "cat.jpg"
SUMMARY_KEYS = {"class", "probability", "method", "input_size", "deletion_auc", "insertion_auc",
                "random_deletion_auc", "random_insertion_auc", "seconds"}


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server.url, verbose=False)


def explain(client, architecture="efficientnet_lite0", method="gradcam", target="top1", path=CAT):
    return client.predict(handle_file(str(path)), architecture, method, target, api_name="/explain")


def as_dict(summary):
    return summary if isinstance(summary, dict) else json.loads(summary)


def test_explain_top1_gives_overlay_raw_map_and_summary(client):
    overlay, npy, summary = explain(client)
    summary = as_dict(summary)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["class"] in {"tiger cat", "tabby", "Egyptian cat"} and summary["method"] == "gradcam"
    assert summary["input_size"] == [224, 224]
    with Image.open(overlay) as picture:
        assert picture.size == (224, 224)
    saliency = np.load(npy)
    assert saliency.dtype == np.float32 and saliency.shape == (224, 224)
    assert saliency.min() == 0 and saliency.max() == 1
    for key in SUMMARY_KEYS - {"class", "method", "input_size"}:
        assert isinstance(summary[key], float) and summary[key] >= 0


def test_explain_a_class_by_name_or_index(client):
    by_name = as_dict(explain(client, method="gradcam_pp", target="Egyptian cat")[2])
    assert by_name["class"] == "Egyptian cat" and by_name["class_index"] == 285
    by_index = explain(client, method="gradcam_pp", target=285)
    assert as_dict(by_index[2])["class"] == "Egyptian cat"
    assert np.array_equal(np.load(by_index[1]), np.load(explain(client, method="gradcam_pp", target="285")[1]))


def test_rollout_on_a_swin(client):
    """Offline, the only Swin the app can run is swin_cifar (no pretrained weights exist: untrained)."""
    _, npy, summary = explain(client, "swin_cifar", "grad_rollout", "cat")
    summary = as_dict(summary)
    assert summary["class"] == "cat" and summary["input_size"] == [32, 32] and summary["pretrained"] is False
    assert np.load(npy).shape == (32, 32)


@pytest.mark.parametrize("architecture, method, target, message", [
    ("efficientnet_lite0", "lime", "top1", "method must be one of gradcam, gradcam_pp,"),
    ("efficientnet_lite0", "gradcam", "unicorn", "'unicorn' is not a class of this model;"),
    ("efficientnet_lite0", "gradcam", 1000, "Class index 1000 is out of range;"),
    ("efficientnet_lite0", "rollout", "top1", "rollout needs a Swin Transformer's attention and efficientnet_lite0"),
    ("swin_tiny_patch4_window7_224", "gradcam", "top1", "offline mode is on"),
])
def test_bad_requests_get_one_sentence(client, architecture, method, target, message):
    with pytest.raises(AppError) as caught:
        explain(client, architecture, method, target)
    text = str(caught.value)
    assert message in text
    assert "Traceback" not in text


def test_a_file_that_is_not_an_image_is_refused(client, tmp_path):
    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image")
    with pytest.raises(AppError) as caught:
        explain(client, path=bogus)
    assert "image" in str(caught.value)


def test_arguments_are_checked_at_the_gate(client):
    with pytest.raises(AppError) as caught:
        explain(client, target=[1, 2])
    assert "target must be a class name, a class index" in str(caught.value)


# --------------------------------------------------------------------------- callbacks, no browser
@pytest.fixture(scope="module")
def service():
    from demo.service import InferenceService, Settings

    return InferenceService(Settings())


def test_page_callbacks(service):
    import gradio as gr

    from demo import explain_tab

    callbacks = explain_tab.ExplainCallbacks(service, lambda path: Image.open(path).convert("RGB"))
    selected, note = callbacks.on_class_select(gr.SelectData(None, {"index": 1, "value": "Egyptian cat"}))
    assert selected == "Egyptian cat" and "Egyptian cat" in note
    overlay, raw, curves, scores, npy, summary, state = callbacks.explain_ui(str(CAT), "efficientnet_lite0",
                                                                           "gradcam", selected, 0.5)
    assert overlay.shape == raw.shape == (224, 224, 3) and curves.ndim == 3
    assert summary["class"] == "Egyptian cat" and "deletion AUC" in scores and "random map" in scores
    assert np.array_equal(callbacks.reoverlay(state, 0.0), state[0])
    methods, note, box = callbacks.on_architecture("efficientnet_lite0", "rollout")
    assert methods["value"] == "gradcam" and "rollout" not in [v for _, v in methods["choices"]]
    methods, _, _ = callbacks.on_architecture("swin_cifar", "rollout")
    assert methods["value"] == "rollout"


def test_compare_callback(service):
    from demo import compare_tab

    callbacks = compare_tab.CompareCallbacks(service, lambda path: Image.open(path).convert("RGB"))
    outputs = callbacks.compare(str(CAT), ["efficientnet_lite0", "swin_cifar"])
    assert len(outputs) == 9
    lite0_text, lite0_label, lite0_overlay = outputs[:3]
    assert "Grad-CAM" in lite0_text["value"] and "deletion" in lite0_text["value"]
    assert lite0_overlay["value"].shape == (224, 224, 3) and len(lite0_label["value"]) == 5
    assert outputs[4]["visible"] and outputs[5]["value"].shape == (256, 256, 3)  # the 32-pixel input shown 8 times enlarged
    assert outputs[6]["visible"] is False


def test_explain_without_a_method_or_target_uses_the_defaults(service):
    from demo import arguments, explain_tab

    # What the hidden API textboxes send when a client leaves method and target out.
    for empty in ("", None):
        assert explain_tab.method_argument(empty) == "gradcam"
        assert explain_tab.target_argument(empty) == "top1"
    assert explain_tab.target_argument(0) == 0  # index 0 is a class, not "no target"
    with pytest.raises(arguments.ArgumentError, match="method must be one of"):
        explain_tab.method_argument("nope")
    callbacks = explain_tab.ExplainCallbacks(service, lambda path: Image.open(path).convert("RGB"))
    _, _, summary = callbacks.explain_api(str(CAT), "efficientnet_lite0", "", "")
    assert summary["method"] == "gradcam" and summary["class"]
