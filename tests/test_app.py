"""The app: started as ``python app.py`` (conftest's ``app_server``: loopback,
Hub offline, empty Hub cache) and called through ``gradio_client``; and its
service and callbacks as plain functions, without a server."""
import concurrent.futures
import io
import json
import re
import struct
import threading
import time
import urllib.request
import zipfile
import zlib

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageCms

import models
import corpus
from conftest import APP_UPLOAD_LIMIT_MB, ROOT, assert_one_sentence
from demo import gate, images, panels, service as service_module
from demo.service import ByteLRU, InferenceService, ModelCache, Settings, download_progress
from demo.ui import EXAMPLES, Callbacks, architecture_choices, serve

EXAMPLES_DIR = ROOT / "assets" / "examples"
CAT_CLASSES = set(models.get_spec("efficientnet_lite0").labels[281:286])  # tabby ... Egyptian cat
SWIN_T = "swin_tiny_patch4_window7_224"


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server.url, verbose=False)


def classify(client, path, architecture="efficientnet_lite0", **kwargs):
    return client.predict(handle_file(str(path)), architecture, api_name="/classify", **kwargs)


def assert_cat(result):
    assert result["label"] in CAT_CLASSES, result
    return result


# ---------------------------------------------------------------- bad files, written here

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _noise(seed, size):
    return Image.fromarray((np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8))


def _encoded(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def _zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.txt", "not a photo")
    return buffer.getvalue()


NOT_AN_IMAGE = "This file is not an image this app can read; upload a JPEG, PNG, WebP, GIF, BMP, TIFF or AVIF file."
DAMAGED = "The image is damaged or incomplete (perhaps a cut-off download); upload the whole file."
BAD_FILES = {
    "empty.jpg": (lambda: b"", "The file is empty; upload a photo instead."),
    "text.jpg": (lambda: b"Shopping list: eggs, milk, a new camera.\n" * 10, NOT_AN_IMAGE),
    "truncated.jpg": (lambda: _encoded(_noise(0, 256), "JPEG")[:9000], DAMAGED),
    "truncated.png": (lambda: _encoded(_noise(1, 128), "PNG")[:20000], DAMAGED),
    "bomb.png": (lambda: b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
                 + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + png_chunk(b"IEND", b""),
                 "The image is larger than the 40 megapixels this app accepts; upload a smaller image."),
    "archive.zip": (_zip_bytes, NOT_AN_IMAGE),
    "drawing.svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><circle r="4"/></svg>',
                    NOT_AN_IMAGE),
    "document.pdf": (lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", NOT_AN_IMAGE),
}


# ---------------------------------------------------------------- the running app

def test_python_app_py_serves_the_page(app_server):
    with urllib.request.urlopen(app_server.url, timeout=10) as response:
        assert response.status == 200
        assert "<html" in response.read().decode("utf-8", "replace").lower()
    with urllib.request.urlopen(app_server.url + "config", timeout=10) as response:
        config = json.loads(response.read())
    assert config["title"] == "Inside the Classifier"
    assert f"http://127.0.0.1:{app_server.port}" in app_server.output()  # GRADIO_SERVER_NAME / _PORT honoured


def test_serve_freezes_what_lives_as_long_as_the_app_then_launches():
    """The objects made before serving are out of the collector's full passes
    (``gc.freeze``), garbage among them freed first; launch gets the options."""
    import gc
    import weakref

    class Cycle:
        pass

    class FakeDemo:
        launched_with = None

        def launch(self, **options):
            self.launched_with = options
            self.frozen_when_launched = gc.get_freeze_count()

    garbage = Cycle()
    garbage.self = garbage
    gone = weakref.ref(garbage)
    del garbage
    fake = FakeDemo()
    gc.unfreeze()
    try:
        serve(fake, Settings(max_upload_mb=3))
        assert gone() is None  # collected, not frozen alive
        assert fake.frozen_when_launched > 10_000  # the imported modules, at least
        assert fake.launched_with["max_file_size"] == 3 * 2**20
    finally:
        gc.unfreeze()


def test_api_names_and_parameters(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/classify"]["parameters"]] == ["image", "architecture", "top_k"]
    assert [p["parameter_name"] for p in endpoints["/swin_views"]["parameters"]] == [
        "image", "architecture", "stage", "block", "head", "query_x", "query_y"]
    assert len(endpoints["/swin_views"]["returns"]) == 7
    assert [p["parameter_name"] for p in endpoints["/explain"]["parameters"]] == [
        "image", "architecture", "method", "target"]
    assert len(endpoints["/explain"]["returns"]) == 3
    # Only the three documented endpoints are public.
    assert set(endpoints) == {"/classify", "/swin_views", "/explain"}


def test_classify_cat_with_the_offline_default(client):
    result = assert_cat(classify(client, EXAMPLES_DIR / "cat.jpg"))
    confidences = [c["confidence"] for c in result["confidences"]]
    assert len(confidences) == 5  # default top-k
    assert confidences == sorted(confidences, reverse=True) and 0 < sum(confidences) <= 1 + 1e-6
    assert len(classify(client, EXAMPLES_DIR / "cat.jpg", top_k=3)["confidences"]) == 3


def test_classify_espresso(client):
    assert classify(client, EXAMPLES_DIR / "espresso.jpg", top_k=2)["label"] == "espresso"


def test_classify_untrained_cifar_swin_gives_cifar_classes(client):
    result = classify(client, EXAMPLES_DIR / "cat.jpg", "swin_cifar", top_k=10)
    assert {c["label"] for c in result["confidences"]} == set(models.get_spec("swin_cifar").labels)


def test_classify_swin_without_weights_says_so_and_offers_the_offline_default(client):
    with pytest.raises(AppError) as caught:
        classify(client, EXAMPLES_DIR / "cat.jpg", SWIN_T)
    message = str(caught.value)
    assert "Could not get the weights of timm/swin_tiny_patch4_window7_224.ms_in1k" in message
    assert "not in the local cache" in message
    assert "Choose efficientnet_lite0, which works offline" in message
    assert_cat(classify(client, EXAMPLES_DIR / "cat.jpg"))


def _swin_views(client, path=EXAMPLES_DIR / "cat.jpg", architecture=SWIN_T, stage=0, block=1, head="mean",
                query_x=112, query_y=112):
    return client.predict(handle_file(str(path)), architecture, stage, block, head, query_x, query_y,
                          api_name="/swin_views")


def test_swin_views_without_weights_are_drawn_and_marked_untrained(client):
    outputs = _swin_views(client, stage=0, block=1, head="mean", query_x=220, query_y=5)
    *pictures, summary = outputs
    assert len(pictures) == 6
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in pictures]
    model_input, windows, mask, query, block, bias = arrays
    assert model_input.shape == (224, 224, 3)
    for array in arrays[1:]:
        assert array.shape[0] > 300 and array.shape[1] > 400 and array.std() > 10  # a drawn figure, not blank
    assert "untrained weights" in summary and "not in the local cache" in summary
    assert "token (1, 55) of stage 0" in summary and "block 1 (shift 3, 3)" in summary

    # Another head and query point: the attention views change, the window grid does not.
    other = [np.asarray(Image.open(p).convert("RGB")) for p in
             _swin_views(client, stage=0, block=1, head="2", query_x=30, query_y=100)[:6]]
    assert other[1].shape == windows.shape and np.array_equal(other[1], windows)
    assert not np.array_equal(other[3], query)
    assert not np.array_equal(other[0], model_input)  # the query marker moved


def test_swin_views_defaults_and_a_deeper_stage(client):
    *pictures, summary = _swin_views(client, EXAMPLES_DIR / "espresso.jpg", stage=2, block=5, head=11,
                                     query_x=0, query_y=223)
    assert all(Image.open(p).size[0] > 100 for p in pictures)
    assert "stage 2" in summary and "block 5" in summary and "head 11 of 12" in summary


@pytest.mark.parametrize("selection, message", [
    (dict(stage=0, block=5), "Stage 0 of swin_tiny_patch4_window7_224 has blocks 0 to 1; choose one of those, not 5."),
    (dict(stage=0, head="3"), "Stage 0 of swin_tiny_patch4_window7_224 has heads 0 to 2; choose one of those or "
                              "\"mean\", not 3."),
    (dict(query_x=224), "The query point (224, 112) is outside the 224 x 224 model input; choose x from 0 to 223 "
                        "and y from 0 to 223."),
    (dict(head="third"), "The head 'third' is not a number; give a head number or \"mean\"."),
    (dict(architecture="efficientnet_lite0"), "efficientnet_lite0 is not a Swin Transformer; choose one of"),
])
def test_swin_views_refuse_what_the_model_does_not_have(client, selection, message):
    with pytest.raises(AppError) as caught:
        _swin_views(client, **selection)
    assert message in str(caught.value)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_gets_a_clear_message_and_the_app_keeps_working(client, tmp_path, name):
    make, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(AppError) as caught:
        classify(client, path)
    assert str(caught.value) == expected
    assert "Traceback" not in str(caught.value)
    with pytest.raises(AppError) as caught:
        _swin_views(client, path)
    assert str(caught.value) == expected
    assert_cat(classify(client, EXAMPLES_DIR / "cat.jpg"))


def test_upload_over_the_size_limit_is_refused_by_the_server(app_server, client):
    too_big = bytes(APP_UPLOAD_LIMIT_MB * 2**20 + 1)
    response = httpx.post(app_server.url + "gradio_api/upload", files={"files": ("big.jpg", too_big)}, timeout=30)
    assert response.status_code == 413
    assert "maximum allowed size" in response.text
    assert_cat(classify(client, EXAMPLES_DIR / "cat.jpg"))


def test_requests_at_once_all_answered(app_server):
    def one(path):
        return Client(app_server.url, verbose=False).predict(
            handle_file(str(path)), "efficientnet_lite0", 1, api_name="/classify")["label"]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        labels = list(pool.map(one, [EXAMPLES_DIR / "espresso.jpg", EXAMPLES_DIR / "cat.jpg",
                                     EXAMPLES_DIR / "espresso.jpg"]))
    assert labels[0] == labels[2] == "espresso" and labels[1] in CAT_CLASSES


def test_the_server_log_has_no_stack_trace_from_user_errors(app_server):
    assert "Traceback" not in app_server.output()


# ---------------------------------------------------------------- examples

def test_examples_are_real_photos_with_their_sources():
    assert len(EXAMPLES) >= 6
    sources = (EXAMPLES_DIR / "SOURCES.md").read_text(encoding="utf-8")
    for name in EXAMPLES:
        image = images.load_image(EXAMPLES_DIR / name)
        assert min(image.size) >= 256, name
        row = next(line for line in sources.splitlines() if f"`{name}`" in line)
        assert re.search(r"CC0|[Pp]ublic domain|[Nn]o known copyright|CC BY 4\.0", row), row


# ---------------------------------------------------------------- service and callbacks, no server

class FakeModel(torch.nn.Module):
    def __init__(self, megabytes: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(megabytes * 2**20 // 4))


def test_byte_lru_evicts_least_recently_used_and_keeps_an_oversized_entry_alone():
    cache = ByteLRU(10, size_of=len)
    cache.put("a", "xxxx")
    cache.put("b", "xxxx")
    assert cache.get("a") == "xxxx"          # a is now the most recent
    assert cache.put("c", "xxxx") == ["b"]   # 12 > 10: the least recent goes
    assert cache.keys() == ["a", "c"]
    assert cache.put("huge", "x" * 50) == ["a", "c"]
    assert cache.keys() == ["huge"] and cache.total_bytes == 50


def test_model_cache_loads_once_under_concurrent_requests_and_bounds_memory():
    calls = []
    lock = threading.Lock()

    def create(name, pretrained, tqdm_class=None):
        with lock:
            calls.append(name)
        time.sleep(0.2)
        return FakeModel({"efficientnet_lite0": 4, "swin_cifar": 4, "tf_efficientnetv2_s": 12}[name])

    cache = ModelCache(max_bytes=10 * 2**20, create=create)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: cache.get("efficientnet_lite0", True), range(4)))
    assert calls == ["efficientnet_lite0"] and all(m is loaded[0] for m in loaded)
    cache.get("lite0", True)  # an alias of the same model
    assert calls == ["efficientnet_lite0"]
    cache.get("swin_cifar", False)
    assert cache.loaded() == [("efficientnet_lite0", True), ("swin_cifar", False)]
    cache.get("tf_efficientnetv2_s", True)  # 12 MB > 10 MB bound: loads, alone
    assert cache.loaded() == [("tf_efficientnetv2_s", True)]
    cache.get("efficientnet_lite0", True)
    assert calls.count("efficientnet_lite0") == 2


def test_a_dropped_model_s_memory_goes_back_once_its_last_request_is_done(monkeypatch):
    """The weights of a model the cache dropped are handed back to the kernel
    (release_free_memory) when the model is gone, not before: a request may
    still be using it."""
    calls = []
    monkeypatch.setattr(service_module, "release_free_memory", lambda: calls.append(time.monotonic()))
    monkeypatch.setattr(service_module, "RELEASE_DELAY_S", 0.01)
    cache = ModelCache(max_bytes=10 * 2**20, create=lambda name, pretrained, tqdm_class=None: FakeModel(6))
    in_use = cache.get("efficientnet_lite0", True)  # a request holds it...
    cache.get("swin_cifar", False)  # ...while the cache drops it
    assert cache.loaded() == [("swin_cifar", False)]
    assert len(calls) == 1  # at the eviction (nothing to give back yet: the model is alive)
    time.sleep(0.3)
    assert len(calls) == 1
    del in_use  # the request is done: the model is gone
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(calls) == 2


def test_the_service_runs_its_models_prepared_for_inference():
    service = InferenceService(Settings(download_retry_s=0))
    lite0 = service.models.get("efficientnet_lite0", True)
    assert lite0.prepared_for_inference and not any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0.modules())
    assert service.classify(Image.open(ROOT / "assets" / "examples" / "cat.jpg").convert("RGB"),
                            "efficientnet_lite0").probabilities  # and it classifies


def test_model_cache_remembers_a_failed_download(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(service_module.models, "weights_status", lambda name: "download")
    calls = []

    def create(name, pretrained, tqdm_class=None):
        calls.append(pretrained)
        if pretrained:
            raise models.WeightsUnavailableError("Could not get model.safetensors of x from the Hugging Face Hub.")
        return FakeModel(1)

    cache = ModelCache(max_bytes=2**30, download_retry_s=60, create=create)
    for _ in range(2):
        with pytest.raises(models.WeightsUnavailableError, match="Could not get model.safetensors"):
            cache.get(SWIN_T, True)
        cache.get(SWIN_T, False)  # the untrained fallback does not clear the failure
    assert calls == [True, False]


def test_offline_mode_fails_before_building_the_model(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(service_module.models, "weights_status", lambda name: "download")
    cache = ModelCache(max_bytes=2**30, create=lambda *a, **k: pytest.fail("the model should not be built"))
    with pytest.raises(models.WeightsUnavailableError, match="offline mode is on"):
        cache.get(SWIN_T, True)


def test_download_progress_reports_fractions():
    reports = []
    bar_class = download_progress(lambda fraction, text: reports.append((fraction, text)))
    with bar_class(total=200, desc="model.safetensors", disable=False, file=io.StringIO()) as bar:
        bar.update(50)
        bar.update(150)
    assert reports == [(0.25, "Downloading model.safetensors"), (1.0, "Downloading model.safetensors")]
    assert download_progress(None) is None


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("APP_MODEL_CACHE_MB", "300")
    monkeypatch.setenv("APP_MAX_PIXELS", "1000000")
    monkeypatch.setenv("APP_CONCURRENCY", "2")
    monkeypatch.setenv("APP_TORCH_THREADS", "")
    settings = Settings.from_env()
    assert settings.model_cache_mb == 300 and settings.max_pixels == 1_000_000 and settings.concurrency == 2
    assert settings.torch_threads == max(1, service_module.available_cpus() // 2)


@pytest.mark.parametrize("given, head", [(None, None), ("mean", None), ("", None), (-1, None), ("3", 3), (2, 2),
                                         (4.0, 4), ("head 5", 5)])
def test_parse_head(given, head):
    assert panels.parse_head(given) == head


def test_architecture_chooser_lists_every_model_with_its_status():
    choices = architecture_choices()
    assert [name for _, name in choices] == models.list_models()
    labels = dict((name, label) for label, name in choices)
    assert labels["efficientnet_lite0"].endswith("ready")
    assert labels["swin_cifar"].endswith("untrained")
    assert labels[SWIN_T].endswith(("needs a download", "ready"))


def test_classify_ui_shows_time_and_probabilities():
    callbacks = Callbacks(InferenceService(Settings(torch_threads=2)))
    label, details, notice, fallback = callbacks.classify_ui(gate.open_server_file(EXAMPLES_DIR / "espresso.jpg"),
                                                             "efficientnet_lite0", 3)
    assert list(label)[0] == "espresso" and len(label) == 3
    assert re.search(r"the model took \*\*\d+ ms\*\*", details) and "pretrained weights" in details
    assert notice["visible"] is False and fallback["visible"] is False


def test_classify_ui_says_when_the_model_cannot_see_the_image_well():
    """A tiny image, a strip cut by the decoder and a 3 : 1 panorama get one
    sentence beside the answer; the example photos get none."""
    callbacks = Callbacks(InferenceService(Settings(torch_threads=2)))

    def notice_for(image):
        _, _, notice, _ = callbacks.classify_ui(image, "efficientnet_lite0", 3)
        return notice

    assert notice_for(gate.open_server_file(EXAMPLES_DIR / "cat.jpg"))["visible"] is False
    tiny = notice_for(Image.new("RGB", (1, 1), (90, 40, 200)))
    assert tiny["visible"] and "1 x 1 image enlarged 256 times" in tiny["value"]
    assert "at least 64 pixels on its shorter side" in tiny["value"]
    # The size uploaded, not the part the decoder kept, whatever conversions the decoder made.
    strip = Image.new("RGBA", (4000, 3), (90, 40, 200, 255))
    for data in (corpus.encoded(strip, "PNG"), corpus.encoded(strip.convert("RGB"), "JPEG",
                                                            icc_profile=ImageCms.ImageCmsProfile(
                                                                ImageCms.createProfile("sRGB")).tobytes())):
        decoded = images.load_image(data)
        assert decoded.size == (60, 3) and decoded.info["original_size"] == (4000, 3)
        notice = notice_for(decoded)
        assert notice["visible"] and "4000 x 3 image" in notice["value"], notice["value"]
    wide = notice_for(Image.new("RGB", (900, 300), (90, 40, 200)))
    assert wide["visible"] and "only the middle 26% of this 900 x 300 image" in wide["value"]
    for notice in (tiny, notice, wide):
        assert_one_sentence(notice["value"].removeprefix("⚠️ "))


def test_coverage_follows_the_transform():
    """models.coverage against what create_transform really does to an image
    with one bright pixel column per 10 % of its width."""
    lite0, digits = models.get_spec("efficientnet_lite0"), models.get_spec("swin_digits")
    enlargement, share = models.coverage(lite0, 400, 100)
    assert enlargement == pytest.approx(256 / 100) and share == pytest.approx(224 / 1024 * 224 / 256)
    assert models.coverage(lite0, 100, 400) == pytest.approx((enlargement, share))
    enlargement, share = models.coverage(digits, 8, 4)  # squashed: both sides scaled, everything seen
    assert enlargement == pytest.approx(16 / 4) and share == 1.0
    # Against the transform itself: the share of the columns that survive the crop.
    marks = np.zeros((100, 1000, 3), np.uint8)
    marks[:, ::10] = 255
    x = models.create_transform(lite0)(Image.fromarray(marks))
    _, share = models.coverage(lite0, 1000, 100)
    seen = share * 100  # of the 100 marks, about this many in the model input
    bright = (x[0].mean(0) > x[0].mean()).nonzero().flatten()
    columns = int((bright[1:] - bright[:-1] > 1).sum()) + 1
    assert abs(columns - seen) <= 2, (columns, seen)


def test_classify_ui_offers_the_offline_default_when_weights_are_missing(monkeypatch):
    callbacks = Callbacks(InferenceService(Settings()))

    def unavailable(*args, **kwargs):
        raise models.WeightsUnavailableError("Could not get config.json of timm/x from the Hugging Face Hub: "
                                             "the Hub cannot be reached and the file is not in the local cache.")

    monkeypatch.setattr(callbacks.service, "classify", unavailable)
    label, details, notice, fallback = callbacks.classify_ui(gate.open_server_file(EXAMPLES_DIR / "cat.jpg"), SWIN_T, 5)
    assert label is None
    assert notice["visible"] and "the Hub cannot be reached" in notice["value"]
    assert "Choose efficientnet_lite0, which works offline" in notice["value"]
    assert fallback["visible"] and "efficientnet_lite0" in fallback["value"]
    assert Callbacks.use_offline_default()["value"] == models.OFFLINE_DEFAULT


def test_swin_controls_follow_the_architecture():
    info, stage, block, head, query_x, query_y = Callbacks.on_architecture("swin_base_patch4_window12_384")
    assert "swin_base_patch4_window12_384" in info
    assert stage["maximum"] == 3 and block["maximum"] == 1 and len(head["choices"]) == 1 + 4
    assert query_x["value"] == 192 and query_y["maximum"] == 383
    block, head = Callbacks.on_stage("swin_base_patch4_window12_384", 2, 1, "7")
    assert block["maximum"] == 17 and block["value"] == 1 and head["value"] == "7" and len(head["choices"]) == 17
    block, head = Callbacks.on_stage("swin_cifar", 0, 5, "7")
    assert block["maximum"] == 1 and block["value"] == 1 and head["value"] == "mean"
    assert Callbacks.on_architecture("efficientnet_lite0")[1] == {"__type__": "update"}


def test_swin_views_ui_for_a_non_swin_explains_instead_of_failing():
    outputs = Callbacks(InferenceService(Settings())).swin_views_ui(
        gate.open_server_file(EXAMPLES_DIR / "cat.jpg"), "efficientnet_lite0", 0, 1, "mean", 112, 112)
    assert outputs[:6] == (None,) * 6 and "Choose a Swin Transformer" in outputs[6]


def test_page_selection_is_fitted_to_the_architecture():
    from demo.ui import fit_selection

    # Left over from Swin-B 384 stage 2 block 17 head 20, query (380, 5): swin_cifar has 3 stages, 32 pixels.
    assert fit_selection("swin_cifar", 3, 17, "20", 380, 5) == (2, 1, "mean", 31, 5)
    assert fit_selection(SWIN_T, 2, 5, "11", None, "") == (2, 5, "11", 112, 112)
    assert fit_selection(SWIN_T, 0, 1, "bogus", -4, 300) == (0, 1, "mean", 0, 223)


def test_a_click_on_the_model_input_becomes_model_input_pixels():
    import gradio as gr

    def click(architecture, x, y):
        return Callbacks.on_select(gr.SelectData(None, {"index": [x, y], "value": None}), architecture)

    assert click(SWIN_T, 200, 17) == (200, 17)
    assert click(SWIN_T, 224, -1) == (223, 0)
    assert panels.display_scale((32, 32)) == 8
    assert click("swin_cifar", 255, 8) == (31, 1)  # shown 8 times enlarged


def test_swin_cifar_model_input_is_shown_enlarged(client):
    *pictures, summary = _swin_views(client, architecture="swin_cifar", stage=1, block=1, head="0",
                                     query_x=30, query_y=2)
    assert Image.open(pictures[0]).size == (256, 256)
    assert "untrained weights" in summary and "has no pretrained weights" in summary
    assert "token (0, 7) of stage 1 (4 x 4 pixels)" in summary  # x 30 // 4, y 2 // 4


def test_the_readme_api_example_runs(app_server, monkeypatch):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## API\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'api_name="/classify"' in code and 'api_name="/swin_views"' in code and 'api_name="/explain"' in code
    monkeypatch.chdir(ROOT)
    namespace = {}
    exec(code.replace("http://127.0.0.1:7860/", app_server.url), namespace)
    assert namespace["result"]["label"] in CAT_CLASSES
    assert "untrained weights" in namespace["summary"]
    assert Image.open(namespace["query_attention"]).size[0] > 300
    assert namespace["explanation"]["class"] == "Egyptian cat"
    assert namespace["np"].load(namespace["raw_map"]).shape == (224, 224)
