"""Loading from the Hub through the loopback fake: the first load downloads,
the second comes from the cache with no request; each failure gives an error
naming the repository and the cause, and leaves nothing in the cache that
breaks the next attempt."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file
from timm.models import save_for_hf

import models
from models.hub import fetch_hub_checkpoint

from fakehub import set_offline

SWIN_T = "swin_tiny_patch4_window7_224"
TINY_REPO = "timm/tiny_test_model.unit"


@pytest.fixture(scope="module")
def swin_t_checkpoint(tmp_path_factory):
    import timm

    folder = tmp_path_factory.mktemp("swin_t")
    reference = timm.create_model(SWIN_T).eval()
    save_for_hf(reference, folder, safe_serialization=True)
    return folder


@pytest.fixture
def tiny_repo(fake_hub, tmp_path):
    """A small checkpoint in timm's Hub layout: enough to exercise the download path fast."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    save_file({"weight": torch.arange(300_000, dtype=torch.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "tiny", "pretrained_cfg": {"crop_pct": 0.8}}))
    fake_hub.add_folder(TINY_REPO, folder)
    return folder


def assert_fetch_works(fake_hub):
    state_dict, cfg = fetch_hub_checkpoint(TINY_REPO)
    assert torch.equal(state_dict["weight"], torch.arange(300_000, dtype=torch.float32)) and cfg["crop_pct"] == 0.8


def test_first_load_downloads_and_the_second_makes_no_request(fake_hub, swin_t_checkpoint):
    spec = models.get_spec(SWIN_T)
    fake_hub.add_folder(spec.hf_hub_id, swin_t_checkpoint)
    assert models.weights_status(SWIN_T) == "download"
    first = models.create_model(SWIN_T, pretrained=True)
    paths = [path for _, path in fake_hub.requests]
    assert any("model.safetensors" in p for p in paths) and any("config.json" in p for p in paths)
    assert models.weights_status(SWIN_T) == "cached"

    fake_hub.reset_log()
    second = models.create_model(SWIN_T, pretrained=True)
    assert fake_hub.requests == []
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_preprocessing_comes_from_the_checkpoint_config(fake_hub, swin_t_checkpoint, tmp_path):
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((swin_t_checkpoint / "model.safetensors").read_bytes())
    config = json.loads((swin_t_checkpoint / "config.json").read_text())
    config["pretrained_cfg"].update(crop_pct=0.95, interpolation="bilinear", mean=[0.5, 0.5, 0.5])
    (folder / "config.json").write_text(json.dumps(config))
    fake_hub.add_folder(models.get_spec(SWIN_T).hf_hub_id, folder)
    spec = models.create_model(SWIN_T, pretrained=True).spec
    assert (spec.crop_pct, spec.interpolation, spec.mean) == (0.95, "bilinear", (0.5, 0.5, 0.5))
    assert models.get_spec(SWIN_T).crop_pct == 0.9  # the registry's spec is untouched


def test_offline_with_an_empty_cache_says_so(fake_hub, monkeypatch):
    set_offline(monkeypatch, True)
    with pytest.raises(models.WeightsUnavailableError) as error:
        models.create_model(SWIN_T, pretrained=True)
    message = str(error.value)
    assert "timm/swin_tiny_patch4_window7_224.ms_in1k" in message
    assert "offline mode is on (HF_HUB_OFFLINE=1) and the file is not in the local cache" in message
    assert fake_hub.requests == []


def test_a_missing_repository_is_named(fake_hub):
    with pytest.raises(models.WeightsUnavailableError) as error:
        models.create_model("tf_efficientnetv2_s", pretrained=True)
    assert "timm/tf_efficientnetv2_s.in21k_ft_in1k" in str(error.value)
    assert "not found" in str(error.value)


def test_a_wrong_checkpoint_names_the_keys(fake_hub, tiny_repo):
    # A repository whose weights belong to another model.
    fake_hub.add_folder(models.get_spec(SWIN_T).hf_hub_id, tiny_repo)
    with pytest.raises(models.CheckpointMismatchError) as error:
        models.create_model(SWIN_T, pretrained=True)
    assert "unexpected keys: weight" in str(error.value) and "missing keys: patch_embed.proj.weight" in str(error.value)


CAUSES = {
    "not_found": "has no file model.safetensors (HTTP 404)",
    "server_error": "HTTP 500",
    "drop": "connection to the Hub failed",
    "truncate": "connection to the Hub failed",
    "timeout": "did not answer in time",
}


@pytest.mark.parametrize("fault", list(CAUSES))
def test_download_faults_are_named_and_leave_the_cache_usable(fake_hub, tiny_repo, fault):
    fake_hub.set_fault(TINY_REPO, "model.safetensors", fault)
    with pytest.raises(models.WeightsUnavailableError) as error:
        fetch_hub_checkpoint(TINY_REPO)
    message = str(error.value)
    assert TINY_REPO in message and "model.safetensors" in message
    assert CAUSES[fault] in message, message
    if fault in ("not_found", "server_error", "timeout"):
        # Failing fast: a Hub that answers badly is asked once, not retried with back-off.
        # (A body cut short is resumed a few times by huggingface_hub, which is right for a flaky line.)
        assert len([path for _, path in fake_hub.requests if "model.safetensors" in path]) == 1
    fake_hub.clear_faults()
    assert_fetch_works(fake_hub)
    fake_hub.reset_log()
    assert_fetch_works(fake_hub)  # now from the cache, with no request
    assert fake_hub.requests == []


def test_a_checksum_mismatch_is_refused_and_removed(fake_hub, tiny_repo):
    fake_hub.set_fault(TINY_REPO, "model.safetensors", "bad_checksum")
    with pytest.raises(models.WeightsUnavailableError) as error:
        fetch_hub_checkpoint(TINY_REPO)
    assert TINY_REPO in str(error.value) and "sha256" in str(error.value)
    blobs = list(fake_hub.cache_dir.rglob("blobs/*"))
    assert all(os.path.getsize(b) < 1000 for b in blobs)  # only config.json's blob is left
    fake_hub.clear_faults()
    assert_fetch_works(fake_hub)


def test_the_hub_coming_back_later(fake_hub, tiny_repo, monkeypatch):
    import huggingface_hub.utils._http as http

    sleeps = []
    monkeypatch.setattr(http.time, "sleep", sleeps.append)  # back-off would sleep here
    fake_hub.stop()
    with pytest.raises(models.WeightsUnavailableError, match="connection to the Hub failed"):
        fetch_hub_checkpoint(TINY_REPO)
    assert sleeps == []  # unreachable Hub: one attempt, no back-off
    fake_hub.start()
    assert_fetch_works(fake_hub)
