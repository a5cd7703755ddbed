"""Reliability: bad and odd files never take the app down, the weights that
come from the network are never unpickled and never used unless they fit, and
the models kept loaded stay within a memory bound.

The corpus (tests/corpus.py) goes through ``demo.images`` (each case alone)
and through the running app (conftest's ``app_server``; every case followed
by a normal request). Figures are printed (shown with pytest's output captured
too): the corpus outcomes, and the resident memory while architectures load
one after another.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from safetensors.torch import load_file, save_file

import corpus
import models
from conftest import APP_UPLOAD_LIMIT_MB, ROOT, assert_one_sentence
from demo import images
from demo.images import ImageInputError, load_image
from demo.service import ByteLRU, InferenceService, ModelCache, Settings

EXAMPLES_DIR = ROOT / "assets" / "examples"
CAT_CLASSES = set(models.get_spec("efficientnet_lite0").labels[281:286])
IMAGENET = set(models.get_spec("efficientnet_lite0").labels)
SWIN_T = "swin_tiny_patch4_window7_224"
SWIN_T_REPO = models.get_spec(SWIN_T).hf_hub_id


def say(capsys, text: str) -> None:
    """Print past pytest's capture: the figures belong in the test command's output."""
    with capsys.disabled():
        print(text)


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    return corpus.build(tmp_path_factory.mktemp("corpus"))


def refusal(path, max_pixels=images.DEFAULT_MAX_PIXELS) -> str:
    with pytest.raises(ImageInputError) as caught:
        load_image(path, max_pixels=max_pixels)
    return str(caught.value)


# ---------------------------------------------------------------- the corpus, through demo.images

def test_the_corpus_has_what_the_issue_names():
    names = [case.name for case in corpus.CASES]
    assert len(names) == len(set(names)) and len(names) >= 25
    refused = sum(case.refused for case in corpus.CASES)
    assert refused >= 20 and len(names) - refused >= 20
    for named in ("empty.jpg", "notes.jpg", "scan.jpg", "truncated.jpg", "truncated.png", "claims-50000x50000.png",
                  "1x1.png", "10000x10.png", "10x10000.png", "gray-16-bit.png", "cmyk.jpg",
                  "palette-transparent.png", "rgba.png", "animated.gif", "pages.tif", "exif-rotated.jpg",
                  "photo.webp", "photo.bmp", "drawing.svg", "photos.zip"):
        assert named in names, named


@pytest.mark.parametrize("name", [case.name for case in corpus.CASES])
def test_each_file_is_classified_or_refused_in_one_sentence(corpus_files, name):
    case, path = next((c, p) for c, p in corpus_files if c.name == name)
    start = time.perf_counter()
    try:
        image = load_image(path)
    except ImageInputError as error:
        assert case.refused, f"{name} should be classified, was refused: {error}"
        message = str(error)
        assert_one_sentence(message)
        assert "upload" in message and case.says in message, message
    else:
        assert not case.refused, f"{name} should be refused ({case.says}), was read as {image.size}"
        assert image.mode == "RGB"
        case.check(np.asarray(image))
    assert time.perf_counter() - start < 10
    assert not (path.parent / corpus.UNPICKLED_MARKER).exists()


def test_a_long_thin_strip_costs_what_a_photo_costs(tmp_path):
    """A 40000 x 1 PNG is 40 thousand pixels, but resizing its shorter side to
    the model's 248 made a 9.9-million-pixel-wide image: 7 GB and 25 s of the
    one CPU everybody shares. Cut to its centre first, it costs milliseconds."""
    path = tmp_path / "strip.png"
    path.write_bytes(corpus.by_name("40000x1.png").make(tmp_path))
    start = time.perf_counter()
    image = load_image(path)
    x = models.create_transform(models.get_spec(SWIN_T))(image)
    assert time.perf_counter() - start < 2
    assert image.size == (images.MAX_ASPECT_RATIO, 1) and x.shape == (3, 224, 224)


def test_cutting_a_strip_to_its_centre_keeps_what_centre_crop_models_see():
    strip = corpus.photo_like(4000, 150)   # 26.7 : 1, smooth like a photo
    kept = images.central_part(strip)
    assert kept.size == (3000, 150)
    assert images.central_part(corpus.photo_like(1200, 100)).size == (1200, 100)  # a panorama stays whole
    for name in ("efficientnet_lite0", SWIN_T, "tf_efficientnetv2_s"):
        transform = models.create_transform(models.get_spec(name))
        difference = (transform(strip) - transform(kept)).abs()
        assert difference.mean() < 0.01, name  # the same pixels, resampled within a fraction of a pixel


def test_large_images_are_decoded_one_at_a_time_and_small_ones_never_wait(tmp_path, monkeypatch):
    running, most = [0], {}
    lock = threading.Lock()
    convert = images.to_rgb8

    def slow_convert(image):
        with lock:
            running[0] += 1
            most[image.size] = max(most.get(image.size, 0), running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return convert(image)

    monkeypatch.setattr(images, "to_rgb8", slow_convert)
    monkeypatch.setattr(images, "LARGE_IMAGE_PIXELS", 64 * 64)
    for size in (100, 16):
        Image.new("RGB", (size, size), (1, 2, 3)).save(tmp_path / f"{size}.png")
    for size in (100, 16):
        threads = [threading.Thread(target=load_image, args=(tmp_path / f"{size}.png",)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert most[(100, 100)] == 1   # above LARGE_IMAGE_PIXELS: one at a time
    assert most[(16, 16)] > 1      # small ones run together


def test_colours_pil_cannot_convert_are_refused_in_one_sentence(tmp_path, monkeypatch):
    assert np.asarray(images.to_rgb8(Image.new("La", (2, 2), (0, 0))))[0, 0].tolist() == [255, 255, 255]

    def unsupported(image):
        raise ValueError(f"conversion from {image.mode} to RGB not supported")

    monkeypatch.setattr(images, "to_rgb8", unsupported)
    Image.new("RGB", (4, 4)).save(tmp_path / "odd.png")
    message = refusal(tmp_path / "odd.png")
    assert_one_sentence(message)
    assert "cannot be converted to RGB" in message and "upload" in message


@pytest.mark.parametrize("variable, value", [("APP_MAX_PIXELS", "nan"), ("APP_MAX_PIXELS", "-5"),
                                             ("APP_MAX_PIXELS", "inf"), ("APP_MAX_UPLOAD_MB", "0"),
                                             ("APP_MAX_UPLOAD_MB", "lots"), ("APP_MODEL_CACHE_MB", "-1"),
                                             ("APP_QUEUE_SIZE", "1e999"), ("APP_CONCURRENCY", "0")])
def test_a_mistyped_setting_falls_back_to_its_safe_default(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    settings, defaults = Settings.from_env(), Settings()
    assert (settings.max_pixels, settings.max_upload_mb, settings.model_cache_mb, settings.queue_size,
            settings.concurrency) == (defaults.max_pixels, defaults.max_upload_mb, defaults.model_cache_mb,
                                      defaults.queue_size, defaults.concurrency)
    if variable == "APP_MAX_PIXELS":
        assert images.max_pixels_from_env() == images.DEFAULT_MAX_PIXELS


def test_the_limits_have_safe_defaults_and_are_settings(monkeypatch, tmp_path):
    defaults = Settings()
    assert defaults.max_pixels == images.DEFAULT_MAX_PIXELS == 40_000_000 and defaults.max_upload_mb == 25
    monkeypatch.setenv("APP_MAX_PIXELS", "10000")
    monkeypatch.setenv("APP_MAX_UPLOAD_MB", "3")
    settings = Settings.from_env()
    assert settings.max_pixels == 10_000 and settings.max_upload_mb == 3
    Image.new("RGB", (101, 100)).save(tmp_path / "a.png")
    assert "101 x 100 pixels, more than the 0.01 megapixels" in refusal(tmp_path / "a.png", settings.max_pixels)


# ---------------------------------------------------------------- the corpus, through the running app

def _view_input(client, path) -> np.ndarray:
    """swin_cifar's model input (the whole image squashed to 32 x 32, shown 256 x 256), as the app draws it."""
    outputs = client.predict(handle_file(str(path)), "swin_cifar", 0, 1, "mean", 31, 31, api_name="/swin_views")
    return np.asarray(Image.open(outputs[0]).convert("RGB"))


@pytest.mark.slow  # every corpus file through HTTP; the same files are decoded in-process by default
@pytest.mark.timeout(400)
def test_the_corpus_through_the_running_app(app_server, corpus_files, capsys, tmp_path):
    client = Client(app_server.url, verbose=False)
    rows, problems = [], []
    classified = refused = viewed = 0
    started = time.perf_counter()
    for case, path in corpus_files:
        start = time.perf_counter()
        try:
            result = client.predict(handle_file(str(path)), "efficientnet_lite0", 5, api_name="/classify")
        except AppError as error:
            outcome = f"refused: {error}"
            refused += 1
            if not case.refused:
                problems.append(f"{case.name}: refused ({error}), should be classified")
            elif str(error) != refusal(path):
                problems.append(f"{case.name}: the app said {error!r}, demo.images says {refusal(path)!r}")
        except Exception as error:  # noqa: BLE001 - anything else is a broken page
            outcome = f"BROKEN: {type(error).__name__}: {error}"
            problems.append(f"{case.name}: {outcome}")
        else:
            outcome = f"classified: {result['label']}"
            classified += 1
            if case.refused:
                problems.append(f"{case.name}: classified, should be refused ({case.says})")
            elif result["label"] not in IMAGENET or len(result["confidences"]) != 5:
                problems.append(f"{case.name}: odd result {result}")
        seconds = time.perf_counter() - start
        if case.view is not None:
            try:
                case.view(_view_input(client, path))
                outcome += "; model input checked"
                viewed += 1
            except (AssertionError, AppError) as error:
                problems.append(f"{case.name}: the model input the app shows is wrong: {error}")
        # After each, a normal request still succeeds.
        good = client.predict(handle_file(str(EXAMPLES_DIR / "cat.jpg")), "efficientnet_lite0", 5,
                              api_name="/classify")
        if good["label"] not in CAT_CLASSES:
            problems.append(f"after {case.name}: the cat came out as {good['label']}")
        rows.append(f"  {case.name[:40]:40s} {seconds:5.2f} s  {outcome}")

    # An upload over the size limit: gradio_client refuses it in one sentence (the server would answer 413).
    too_big = tmp_path / "too-big.jpg"
    too_big.write_bytes(bytes(APP_UPLOAD_LIMIT_MB * 2**20 + 1))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(handle_file(str(too_big)), "efficientnet_lite0", 5, api_name="/classify")
    assert client.predict(handle_file(str(EXAMPLES_DIR / "cat.jpg")), "efficientnet_lite0", 5,
                          api_name="/classify")["label"] in CAT_CLASSES

    seconds = time.perf_counter() - started
    say(capsys, f"\n[corpus] {len(corpus_files)} files through the running app in {seconds:.1f} s: {classified}"
                f" classified, {refused} refused with one sentence, {len(problems)} problems; "
                f"{viewed} model inputs checked for orientation and colour; a normal request after each succeeded\n"
                + "\n".join(rows))
    assert not problems, "\n".join(problems)
    assert not (corpus_files[0][1].parent / corpus.UNPICKLED_MARKER).exists()
    assert "Traceback" not in app_server.output()


# ---------------------------------------------------------------- weights safety

@pytest.fixture(scope="module")
def swin_t_folder(tmp_path_factory):
    """Swin-T with random weights in timm's Hub layout (model.safetensors, config.json)."""
    import timm
    from timm.models import save_for_hf

    folder = tmp_path_factory.mktemp("swin_t_hub")
    torch.manual_seed(0)
    save_for_hf(timm.create_model(SWIN_T).eval(), folder, safe_serialization=True)
    return folder


def _repo_with(tmp_path, source, change=None, extra_files=None):
    """A copy of the checkpoint folder ``source``, its state dict passed through ``change``."""
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "config.json").write_bytes((source / "config.json").read_bytes())
    state = load_file(str(source / "model.safetensors"))
    save_file(change(state) if change else state, str(folder / "model.safetensors"))
    for name, data in (extra_files or {}).items():
        (folder / name).write_bytes(data)
    return folder


class _NoUnpickling(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        raise AssertionError("something unpickled a file")


def _forbid_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled a file")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", _NoUnpickling)


def test_hub_weights_load_with_every_unpickler_disabled(fake_hub, swin_t_folder, tmp_path, monkeypatch):
    # The repository also holds a pickled checkpoint that would leave a file behind if anything unpickled it.
    decoy = corpus.malicious_pickle(tmp_path)
    fake_hub.add_folder(SWIN_T_REPO, _repo_with(tmp_path, swin_t_folder, extra_files={"pytorch_model.bin": decoy}))
    _forbid_unpickling(monkeypatch)
    model = models.create_model(SWIN_T, pretrained=True)
    with torch.inference_mode():
        assert torch.isfinite(model(torch.randn(1, 3, 224, 224))).all()
    assert not any(".bin" in path for _, path in fake_hub.requests)
    assert not (tmp_path / corpus.UNPICKLED_MARKER).exists()


def test_a_pickle_served_as_model_safetensors_is_refused_unread(fake_hub, swin_t_folder, tmp_path):
    folder = _repo_with(tmp_path, swin_t_folder)
    (folder / "model.safetensors").write_bytes(corpus.malicious_pickle(tmp_path))
    fake_hub.add_folder(SWIN_T_REPO, folder)
    with pytest.raises(models.WeightsUnavailableError, match="not a readable safetensors file"):
        models.create_model(SWIN_T, pretrained=True)
    assert not (tmp_path / corpus.UNPICKLED_MARKER).exists()


def _drop(key):
    return lambda state: {k: v for k, v in state.items() if k != key}


def _add(key):
    return lambda state: {**state, key: torch.zeros(3)}


def _reshape(key):
    return lambda state: {**state, key: torch.zeros(10, state[key].shape[1])}


@pytest.mark.parametrize("change, named", [
    (_drop("norm.weight"), "missing keys: norm.weight"),
    (_add("head.extra_bias"), "unexpected keys: head.extra_bias"),
    (_reshape("head.fc.weight"), "head.weight (checkpoint [10, 768], model [1000, 768])"),
], ids=["missing", "extra", "misshapen"])
def test_a_checkpoint_that_does_not_fit_is_refused_before_the_model_is_used(fake_hub, swin_t_folder, tmp_path,
                                                                            monkeypatch, change, named):
    fake_hub.add_folder(SWIN_T_REPO, _repo_with(tmp_path, swin_t_folder, change))
    forwards = []
    monkeypatch.setattr(models.swin.SwinTransformer, "forward", lambda self, x: forwards.append(x))
    # The package: an error naming the tensor, no model.
    with pytest.raises(models.CheckpointMismatchError) as caught:
        models.create_model(SWIN_T, pretrained=True)
    assert named in str(caught.value)
    # The app's service: one sentence, nothing cached, no forward run; the offline default still classifies.
    service = InferenceService(Settings(download_retry_s=0))
    image = load_image(EXAMPLES_DIR / "cat.jpg")
    with pytest.raises(models.WeightsUnavailableError) as caught:
        service.classify(image, SWIN_T)
    message = str(caught.value)
    assert message.startswith(f"The weights of {SWIN_T_REPO} from the Hugging Face Hub do not fit {SWIN_T} (")
    assert_one_sentence(message)
    assert forwards == [] and (SWIN_T, True) not in service.models.loaded()
    assert next(iter(service.classify(image, "efficientnet_lite0").probabilities)) in CAT_CLASSES


def test_a_checkpoint_that_does_not_fit_is_remembered_not_reloaded_for_every_request():
    calls = []

    def create(name, pretrained, tqdm_class=None):
        calls.append(name)
        raise models.CheckpointMismatchError("The checkpoint x does not fit SwinTransformer: missing keys: a.b.")

    cache = ModelCache(2**30, download_retry_s=60, create=create)
    for _ in range(3):
        with pytest.raises(models.WeightsUnavailableError, match=r"do not fit .* \(missing keys\)"):
            cache.get(SWIN_T, True)
    assert calls == [SWIN_T]


# ---------------------------------------------------------------- model memory

def test_byte_lru_removes_entries_by_key():
    cache = ByteLRU(100, size_of=len)
    for key in ("a1", "a2", "b1"):
        cache.put(key, "xx")
    assert cache.remove_where(lambda key: key.startswith("a")) == ["a1", "a2"]
    assert cache.keys() == ["b1"] and cache.total_bytes == 2


MEMORY_SCRIPT = r"""
import gc, json, os, sys, time, weakref
import numpy as np, torch
from PIL import Image
import models
from demo.service import InferenceService, ModelCache, Settings, parameter_bytes

def resident_mb(key="VmRSS"):  # as the app's allocator leaves it: the cache hands back what it drops
    gc.collect()
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":")) / 1024

bound_mb, names = float(sys.argv[1]), sys.argv[2].split(",")
torch.set_num_threads(2)
warm = models.create_model("efficientnet_lite0")  # the allocator and thread pools exist before the baseline
with torch.inference_mode():
    warm(torch.zeros(1, 3, 224, 224))
del warm
baseline = resident_mb()

cache = ModelCache(bound_mb * 2**20)
refs, rows = {}, []
for name in names:
    start = time.perf_counter()
    model = cache.get(name, False)
    refs[name], size = weakref.ref(model), parameter_bytes(model) / 2**20
    del model
    rows.append(dict(name=name, model_mb=size, seconds=time.perf_counter() - start, rss_mb=resident_mb(),
                     cached_mb=cache._models.total_bytes / 2**20, loaded=[k[0] for k in cache.loaded()],
                     alive=[n for n, r in refs.items() if r() is not None]))

# The app's service, its cache holding one Swin at a time: Swin views keep their forward (and so their
# model) in the attention cache.
service = InferenceService(Settings(model_cache_mb=250, attention_cache_mb=512, download_retry_s=0))
image = Image.fromarray((np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8))
view_refs, views = {}, []
for name in ("swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_tiny_patch4_window7_224",
             "swin_base_patch4_window7_224"):
    forward = service.swin_forward(image, name)
    view_refs[(name, len(views))] = weakref.ref(forward.model)
    del forward
    gc.collect()
    views.append(dict(name=name, loaded=[k[0] for k in service.models.loaded()],
                      alive=sorted({n for (n, _), r in view_refs.items() if r() is not None}),
                      cached_mb=service.models._models.total_bytes / 2**20, rss_mb=resident_mb()))
print(json.dumps(dict(baseline_mb=baseline, peak_mb=resident_mb("VmHWM"), rows=rows, views=views)))
"""

MEMORY_BOUND_MB = 600
MEMORY_SEQUENCE = ["swin_small_patch4_window7_224", "swin_base_patch4_window7_224", "tf_efficientnetv2_l",
                   "swin_large_patch4_window7_224", "tf_efficientnetv2_m", "swin_tiny_patch4_window7_224",
                   "swin_base_patch4_window12_384", "efficientnet_lite0", "tf_efficientnetv2_s"]
# Resident memory beyond the models' own bytes: transient buffers, allocator slack.
MEMORY_SLACK_MB = 250


@pytest.mark.slow  # loads four full-size models one after another
@pytest.mark.timeout(300)
def test_loading_many_architectures_keeps_memory_under_the_bound(capsys, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "APP_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty-hub-cache"), HF_HUB_DISABLE_TELEMETRY="1")
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(MEMORY_BOUND_MB), ",".join(MEMORY_SEQUENCE)],
                          capture_output=True, text=True, timeout=280, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    baseline, rows = figures["baseline_mb"], figures["rows"]
    largest = max(row["model_mb"] for row in rows)
    bound = baseline + max(MEMORY_BOUND_MB, largest) + MEMORY_SLACK_MB
    # While a model loads, the cache still holds the others: the peak may reach one model more.
    peak_bound = baseline + MEMORY_BOUND_MB + largest + MEMORY_SLACK_MB
    lines = [f"\n[memory] model cache bound {MEMORY_BOUND_MB} MB of parameters; baseline resident {baseline:.0f} MB; "
             f"bound on resident memory between requests = baseline + max(cache bound, largest model "
             f"{largest:.0f} MB) + {MEMORY_SLACK_MB} MB = {bound:.0f} MB; peak resident (VmHWM) "
             f"{figures['peak_mb']:.0f} MB, bound while loading {peak_bound:.0f} MB"]
    for row in rows:
        lines.append(f"  loaded {row['name']:32s} {row['model_mb']:5.0f} MB in {row['seconds']:4.1f} s -> resident "
                     f"{row['rss_mb']:5.0f} MB, cache holds {row['cached_mb']:5.0f} MB: {', '.join(row['loaded'])}")
    for row in figures["views"]:
        lines.append(f"  Swin views of {row['name']:28s} -> models alive: {', '.join(row['alive'])}; resident "
                     f"{row['rss_mb']:5.0f} MB")
    say(capsys, "\n".join(lines))

    for row in rows:
        # Least recently used models are dropped, and once dropped they are gone from memory.
        assert row["cached_mb"] <= max(MEMORY_BOUND_MB, row["model_mb"]) + 1, row
        assert sorted(row["alive"]) == sorted(row["loaded"]), row
        assert row["rss_mb"] - baseline <= row["cached_mb"] + MEMORY_SLACK_MB, row
        assert row["rss_mb"] <= bound
    assert rows[-1]["loaded"][-1] == MEMORY_SEQUENCE[-1]
    assert figures["peak_mb"] <= peak_bound
    # A model dropped from the cache does not live on in the Swin views' attention cache.
    for row in figures["views"]:
        assert sorted(row["alive"]) == sorted(set(row["loaded"])), row


# ---------------------------------------------------------------- many clients at once

@pytest.mark.timeout(400)
def test_24_clients_at_once_lose_nothing_and_memory_stays_under_the_readmes_bound(app_server):
    """16 clients classify and 8 ask for the Swin views (untrained Swin-T: the
    app is offline), all at once: every request is answered, and the app's
    resident memory, sampled every 50 ms, stays under the README's bound."""
    from concurrent.futures import ThreadPoolExecutor

    from demo.service import Settings, resident_memory_bound_mb

    cat = str(ROOT / "assets" / "examples" / "cat.jpg")
    peak, stop = [0.0], threading.Event()

    def sample() -> None:
        status = Path(f"/proc/{app_server.process.pid}/status")
        while not stop.is_set():
            line = next(line for line in status.read_text().splitlines() if line.startswith("VmRSS:"))
            peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            time.sleep(0.05)

    def client(index: int) -> int:
        connection = Client(app_server.url, verbose=False, analytics_enabled=False, download_files=False)
        answered = 0
        for step in range(2):
            if index < 8:
                result = connection.predict(handle_file(cat), SWIN_T, 0, 1, "mean", 20 + 25 * index, 30 * step + 9,
                                            api_name="/swin_views")
                answered += "untrained" in result[-1]
            else:
                result = connection.predict(handle_file(cat), "efficientnet_lite0", 3, api_name="/classify")
                answered += bool(result["label"])
        return answered

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(24) as pool:
            answered = sum(pool.map(client, range(24)))
    finally:
        stop.set()
        sampler.join()
    bound = resident_memory_bound_mb(Settings())
    assert answered == 48
    assert 0 < peak[0] <= bound, f"resident memory peaked at {peak[0]:.0f} MiB, over the bound of {bound:.0f} MiB"
