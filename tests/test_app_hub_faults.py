"""The Hub failing while the app runs: ``python app.py`` on loopback with
``HF_ENDPOINT`` pointing at the loopback fake Hub (tests/fakehub.py), which
serves Swin-T's checkpoint (random weights, timm's layout) and fails on
demand: not found, server error, timeout, connection dropped or cut short
mid-file, a checksum that does not match, the Hub gone, weights that do not fit.

For each: the user asking for Swin-T gets one message naming the cause, the
offline default keeps classifying (at once, not after the failing download),
the Hub cache holds nothing partial or corrupt, and once the Hub is back the
same request succeeds. Figures (seconds to the error, to the recovery) are
printed.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from safetensors.torch import load_file, save_file

import corpus
import models
from conftest import ROOT, running_app
from fakehub import FakeHub

EXAMPLES_DIR = ROOT / "assets" / "examples"
SWIN_T = "swin_tiny_patch4_window7_224"
REPO = models.get_spec(SWIN_T).hf_hub_id
CAT_CLASSES = set(models.get_spec("efficientnet_lite0").labels[281:286])
IMAGENET = set(models.get_spec("efficientnet_lite0").labels)
ETAG_TIMEOUT_S = 3      # the app's HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT (whole seconds, read at import)
STALL_S = 6             # a "timeout" fault: the fake Hub says nothing for longer than the app waits
WEIGHTS = "model.safetensors"
FIGURES: list[str] = []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """Swin-T in timm's Hub layout, with a pickled decoy beside it that nothing may ever load."""
    import timm
    from timm.models import save_for_hf

    folder = tmp_path_factory.mktemp("swin_t_repo")
    torch.manual_seed(0)
    save_for_hf(timm.create_model(SWIN_T).eval(), folder, safe_serialization=True)
    (folder / "pytorch_model.bin").write_bytes(corpus.malicious_pickle(folder.parent))
    return folder


@pytest.fixture(scope="module")
def hub(checkpoint):
    with FakeHub(stall_seconds=STALL_S) as fake:
        fake.add_folder(REPO, checkpoint)
        yield fake


@pytest.fixture(scope="module")
def app(hub, tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app-with-hub"), HF_ENDPOINT=hub.endpoint, HF_HUB_OFFLINE="0",
                     HF_HUB_ETAG_TIMEOUT=str(ETAG_TIMEOUT_S), HF_HUB_DOWNLOAD_TIMEOUT=str(ETAG_TIMEOUT_S),
                     # Ask the Hub again at once after a failure (the default, 120 s, would answer from the
                     # failure), and keep one model loaded at a time, so that Swin-T is fetched afresh every case.
                     APP_DOWNLOAD_RETRY_S="0", APP_MODEL_CACHE_MB="50") as server:
        yield server


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False)


def classify(client, architecture, path=EXAMPLES_DIR / "cat.jpg"):
    return client.predict(handle_file(str(path)), architecture, 5, api_name="/classify")


def assert_offline_default_works(client):
    assert classify(client, "efficientnet_lite0")["label"] in CAT_CLASSES


def forget_swin_t(client, app):
    """Swin-T out of the app (loading Lite0 drops it: the cache holds 50 MB) and out of the Hub cache."""
    assert_offline_default_works(client)
    shutil.rmtree(app.hub_cache / f"models--{REPO.replace('/', '--')}", ignore_errors=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_cache_clean(cache: Path, hub: FakeHub, weights_expected: bool) -> None:
    """No partial download, no blob whose content is not its sha256 name, no link to nothing;
    the weights' blob present (and right) only after a successful download."""
    assert not list(cache.rglob("*.incomplete")), list(cache.rglob("*.incomplete"))
    for blob in cache.rglob("blobs/*"):
        if re.fullmatch(r"[0-9a-f]{64}", blob.name):
            assert sha256(blob) == blob.name, f"corrupt blob {blob}"
    for link in cache.rglob("snapshots/*/*"):
        assert link.exists(), f"dangling {link}"
    weights_blob = next(cache.rglob(f"blobs/{hub.file_sha256(REPO, WEIGHTS)}"), None)
    assert (weights_blob is not None) == weights_expected, list(cache.rglob("blobs/*"))
    snapshot_weights = list(cache.rglob(f"snapshots/*/{WEIGHTS}"))
    assert bool(snapshot_weights) == weights_expected, snapshot_weights


def the_hub_fails(hub, fault):
    if fault == "hub_down":
        hub.stop()
    elif fault == "repo_not_found":
        hub.set_fault(REPO, None, "not_found")
    else:
        hub.set_fault(REPO, WEIGHTS, fault)


def the_hub_is_back(hub):
    hub.clear_faults()
    hub.start()


CAUSES = {
    "not_found": f"Could not get {WEIGHTS} of {REPO} from the Hugging Face Hub: the repository has no file {WEIGHTS} "
                 "(HTTP 404).",
    "repo_not_found": f"Could not get config.json of {REPO} from the Hugging Face Hub: the repository was not found",
    "server_error": f"Could not get {WEIGHTS} of {REPO} from the Hugging Face Hub: the Hub answered with an error "
                    "(HTTP 500).",
    "timeout": f"Could not get {WEIGHTS} of {REPO} from the Hugging Face Hub: the Hub did not answer in time.",
    "drop": f"Could not get {WEIGHTS} of {REPO} from the Hugging Face Hub: the connection to the Hub failed",
    "truncate": f"Could not get {WEIGHTS} of {REPO} from the Hugging Face Hub: the connection to the Hub failed",
    "bad_checksum": f"Could not get {WEIGHTS} of {REPO} from the Hugging Face Hub: the download is corrupt (sha256 "
                    "mismatch) and was removed from the cache",
    "hub_down": f"Could not get config.json of {REPO} from the Hugging Face Hub: the connection to the Hub failed "
                "(ConnectError).",
}
WHAT_TO_DO = "Choose efficientnet_lite0, which works offline, or try again later."


def assert_user_message(message: str, cause: str) -> None:
    assert message.startswith(cause), message
    assert message.endswith(WHAT_TO_DO) and "\n" not in message and "Traceback" not in message, message


# Faults that take the app seconds to give up on: meanwhile other users must be served, not kept waiting.
SLOW_FAULTS = ("timeout", "truncate")


def wait_until(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# By default one fault of each way the app learns of it: an HTTP answer, silence, a corrupt file; the
# others (a cut connection among them) run with the slow tests.
DEFAULT_FAULTS = ("not_found", "timeout", "bad_checksum")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fault", [fault if fault in DEFAULT_FAULTS else pytest.param(fault, marks=pytest.mark.slow)
                                   for fault in CAUSES])
def test_a_hub_fault_costs_one_message_and_nothing_else(app, client, hub, fault):
    forget_swin_t(client, app)
    swin_client = Client(app.url, verbose=False)
    finished = {}

    def ask_for_swin_t():
        try:
            finished["answer"] = classify(swin_client, SWIN_T)
        except AppError as error:
            finished["answer"] = error
        finished["swin"] = time.perf_counter()

    the_hub_fails(hub, fault)
    try:
        seen = len(hub.log)
        start = time.perf_counter()
        swin = threading.Thread(target=ask_for_swin_t)
        swin.start()
        if fault in SLOW_FAULTS:  # the Swin-T request is at the failing file before the other user comes
            wait_until(lambda: any(r.filename == WEIGHTS for r in hub.log[seen:]))
        else:
            time.sleep(0.1)
        asked = time.perf_counter()
        assert_offline_default_works(client)  # another user, meanwhile
        finished["other"] = time.perf_counter()
        swin.join(120)
        assert not swin.is_alive()
        error = finished["answer"]
        assert isinstance(error, AppError), f"Swin-T was classified while the Hub failed ({fault}): {error}"
        assert_user_message(str(error), CAUSES[fault])
        if fault in SLOW_FAULTS:
            assert finished["other"] < finished["swin"], "another user waited for the failing download"
        assert_offline_default_works(client)
        assert_cache_clean(app.hub_cache, hub, weights_expected=False)
    finally:
        the_hub_is_back(hub)

    recovery = time.perf_counter()
    result = classify(client, SWIN_T)
    recovered_s = time.perf_counter() - recovery
    assert result["label"] in IMAGENET and len(result["confidences"]) == 5
    assert_cache_clean(app.hub_cache, hub, weights_expected=True)
    assert_offline_default_works(client)
    FIGURES.append(f"  {fault:15s} the user told after {finished['swin'] - start:4.1f} s, another user served in "
                   f"{finished['other'] - asked:4.2f} s meanwhile; Hub back: Swin-T classified in "
                   f"{recovered_s:4.1f} s; cache clean")


@pytest.mark.timeout(180)
def test_swin_views_during_a_hub_fault_are_drawn_untrained_and_say_why(app, client, hub):
    forget_swin_t(client, app)
    hub.set_fault(REPO, WEIGHTS, "server_error")
    try:
        *pictures, summary = client.predict(handle_file(str(EXAMPLES_DIR / "cat.jpg")), SWIN_T, 0, 1, "mean", 100,
                                            100, api_name="/swin_views")
    finally:
        hub.clear_faults()
    assert len(pictures) == 6 and "untrained weights" in summary and "HTTP 500" in summary
    assert_offline_default_works(client)
    assert_cache_clean(app.hub_cache, hub, weights_expected=False)
    *pictures, summary = client.predict(handle_file(str(EXAMPLES_DIR / "cat.jpg")), SWIN_T, 0, 1, "mean", 100, 100,
                                        api_name="/swin_views")
    assert "untrained" not in summary


@pytest.mark.timeout(180)
@pytest.mark.parametrize("change, kind", [
    (lambda state: {k: v for k, v in state.items() if k != "norm.weight"}, "missing keys"),
    (lambda state: {**state, "head.fc.weight": torch.zeros(10, 768)}, "shape mismatch"),
], ids=["missing", "misshapen"])
def test_hub_weights_that_do_not_fit_cost_one_sentence(app, client, hub, checkpoint, tmp_path, change, kind):
    forget_swin_t(client, app)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    save_file(change(load_file(str(checkpoint / WEIGHTS))), str(bad / WEIGHTS))
    hub.add_folder(REPO, bad)
    try:
        with pytest.raises(AppError) as caught:
            classify(client, SWIN_T)
        assert_user_message(str(caught.value), f"The weights of {REPO} from the Hugging Face Hub do not fit {SWIN_T} "
                                               f"({kind}), so they were not used.")
        assert_offline_default_works(client)
    finally:
        hub.add_folder(REPO, checkpoint)  # the maintainers fix the repository
    forget_swin_t(client, app)
    assert classify(client, SWIN_T)["label"] in IMAGENET


def test_nothing_pickled_was_ever_fetched_or_loaded(app, hub, checkpoint, capsys):
    """The module's requests are over: the pickled decoy beside the weights was never asked for."""
    with capsys.disabled():
        print("\n[hub faults] Swin-T through the running app while the fake Hub fails:\n" + "\n".join(FIGURES))
    assert hub.log and not any("pytorch_model.bin" in record.path for record in hub.log)
    assert not (checkpoint.parent / corpus.UNPICKLED_MARKER).exists()
    assert "Traceback" not in app.output()
