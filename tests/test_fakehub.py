"""Proves that tests/fakehub.py speaks the Hub download protocol of the installed huggingface_hub (2.4.0).

Every test drives the real `huggingface_hub.hf_hub_download` against a loopback `FakeHub` and asserts what 2.4.0
really does, including where it does *not* protect us (checksums, stale `.no_exist` markers).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import constants, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import _CACHED_NO_EXIST, get_hf_file_metadata

from fakehub import FakeHub, fast_retries, git_blob_sha1, set_offline, set_timeouts, use_hub

REPO = "acme/tiny"
CONFIG = b'{"architecture": "tiny", "num_classes": 3}\n'
WEIGHTS = random.Random(0).randbytes(300_000)  # served as LFS (302 -> CDN), etag = sha256
SIZES = {"config.json": len(CONFIG), "model.safetensors": len(WEIGHTS)}
CLIENT_TIMEOUT = 0.3  # seconds, etag and download
STALL = 1.0  # server-side stall of the "timeout" fault


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def repo_cache(cache: Path, repo_id: str = REPO) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def cache_entries(cache: Path) -> list[str]:
    """Every file, symlink and directory under `cache`, relative, sorted."""
    if not cache.exists():
        return []
    return sorted(p.relative_to(cache).as_posix() + ("/" if p.is_dir() and not p.is_symlink() else "")
                  for p in cache.rglob("*"))


def assert_no_partial_or_bad_file(cache: Path) -> None:
    """After a failed download nothing is left that a later attempt could pick up: no blob, no snapshot pointer,
    no *.incomplete. (refs/main, .locks/*.lock, CACHEDIR.TAG and empty dirs may remain; they are harmless.)"""
    entries = cache_entries(cache)
    assert not [e for e in entries if e.endswith(".incomplete")], entries
    rc = repo_cache(cache)
    assert not [p for p in (rc / "blobs").glob("*")], entries
    assert not [p for p in (rc / "snapshots").rglob("*") if not p.is_dir() or p.is_symlink()], entries


def assert_recovers(hub: FakeHub, filename: str) -> str:
    """Clear the faults and download again: must get the right bytes."""
    hub.clear_faults()
    path = hf_hub_download(REPO, filename)
    assert sha256(path) == hub.file_sha256(REPO, filename)
    return path


@pytest.fixture
def hub():
    with FakeHub(stall_seconds=STALL) as h:
        h.add_file(REPO, "config.json", CONFIG)
        h.add_file(REPO, "model.safetensors", WEIGHTS)
        yield h


@pytest.fixture
def cache(tmp_path, hub, monkeypatch) -> Path:
    c = tmp_path / "hf-cache"
    use_hub(monkeypatch, hub.endpoint, c)
    set_timeouts(monkeypatch, etag=CLIENT_TIMEOUT, download=CLIENT_TIMEOUT)
    fast_retries(monkeypatch)
    return c


# --------------------------------------------------------------------------- protocol / caching


def test_metadata_is_what_the_real_hub_sends(hub, cache):
    lfs = get_hf_file_metadata(hf_hub_url(REPO, "model.safetensors"))
    assert lfs.etag == hashlib.sha256(WEIGHTS).hexdigest() == hub.etag(REPO, "model.safetensors")
    assert lfs.size == len(WEIGHTS)
    assert lfs.commit_hash == hub.commit_sha(REPO) and len(lfs.commit_hash) == 40
    assert lfs.location.startswith(hub.cdn_endpoint + "/cdn-lfs/")  # 302 to another origin, like the real CDN
    assert lfs.xet_file_data is None  # no Xet headers: plain HTTP download even though hf_xet is installed

    regular = get_hf_file_metadata(hf_hub_url(REPO, "config.json"))
    assert regular.etag == git_blob_sha1(CONFIG) == hub.etag(REPO, "config.json")
    assert regular.size == len(CONFIG)
    assert regular.location == hf_hub_url(REPO, "config.json")
    assert hub.requests == [("HEAD", "/acme/tiny/resolve/main/model.safetensors"),
                            ("HEAD", "/acme/tiny/resolve/main/config.json")]


def test_download_then_cache_hit_offline_makes_no_request(hub, cache, monkeypatch):
    cfg = hf_hub_download(REPO, "config.json")
    weights = hf_hub_download(REPO, "model.safetensors")
    assert Path(cfg).read_bytes() == CONFIG and Path(weights).read_bytes() == WEIGHTS
    assert Path(cfg).is_relative_to(cache) and Path(weights).is_relative_to(cache)
    methods = [(r.method, r.server, r.status) for r in hub.log]
    assert methods == [("HEAD", "hub", 200), ("GET", "hub", 200), ("HEAD", "hub", 302), ("GET", "cdn", 200)]
    # blobs are named by the etag: git sha1 for regular files, sha256 for LFS files
    blobs = sorted(p.name for p in (repo_cache(cache) / "blobs").iterdir())
    assert blobs == sorted([git_blob_sha1(CONFIG), hashlib.sha256(WEIGHTS).hexdigest()])
    assert (repo_cache(cache) / "refs" / "main").read_text() == hub.commit_sha(REPO)

    hub.reset_log()
    set_offline(monkeypatch, True)
    assert hf_hub_download(REPO, "config.json") == cfg
    assert hf_hub_download(REPO, "model.safetensors") == weights
    assert hub.requests == []  # HF_HUB_OFFLINE: not a single request

    set_offline(monkeypatch, False)
    assert hf_hub_download(REPO, "model.safetensors", local_files_only=True) == weights
    assert hub.requests == []  # local_files_only too


def test_cache_hit_online_makes_exactly_one_head(hub, cache):
    path = hf_hub_download(REPO, "model.safetensors")
    hub.reset_log()
    assert hf_hub_download(REPO, "model.safetensors") == path
    # 2.4.0 online: one HEAD on the resolve URL to re-check the etag/commit, no GET.
    assert hub.requests == [("HEAD", "/acme/tiny/resolve/main/model.safetensors")]


def test_cache_hit_on_pinned_commit_makes_no_request_even_online(hub, cache):
    sha = hub.commit_sha(REPO)
    path = hf_hub_download(REPO, "config.json", revision=sha)
    assert hub.requests[0] == ("HEAD", f"/acme/tiny/resolve/{sha}/config.json")
    hub.reset_log()
    assert hf_hub_download(REPO, "config.json", revision=sha) == path
    assert hub.requests == []


def test_new_commit_on_the_hub_is_picked_up_online(hub, cache):
    old = hf_hub_download(REPO, "config.json")
    new_sha = hub.add_file(REPO, "config.json", b'{"num_classes": 5}')
    new = hf_hub_download(REPO, "config.json")
    assert new != old and Path(new).read_bytes() == b'{"num_classes": 5}'
    assert f"/snapshots/{new_sha}/" in Path(new).as_posix()
    assert Path(old).read_bytes() == CONFIG  # the old snapshot stays in the cache


def test_explicit_endpoint_and_cache_dir_arguments_are_honoured(hub, tmp_path, monkeypatch):
    dead = FakeHub().start()
    dead.stop()
    use_hub(monkeypatch, dead.endpoint, tmp_path / "env-cache")  # env + constants point somewhere dead
    explicit = tmp_path / "explicit"
    path = hf_hub_download(REPO, "model.safetensors", endpoint=hub.endpoint, cache_dir=explicit)
    assert Path(path).read_bytes() == WEIGHTS and Path(path).is_relative_to(explicit)
    assert not (tmp_path / "env-cache").exists()
    assert [r.server for r in hub.log] == ["hub", "cdn"]


def test_env_vars_are_read_at_import_time_only(hub, tmp_path, monkeypatch):
    # Setting the env vars after import changes nothing in this process...
    offline_before = constants.is_offline_mode()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0" if offline_before else "1")
    assert constants.ENDPOINT != hub.endpoint and not hf_hub_url(REPO, "x").startswith(hub.endpoint)
    assert constants.is_offline_mode() == offline_before
    # ...but a fresh process that gets them before importing huggingface_hub uses them with no argument at all.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_")) and k not in ("DO_NOT_TRACK", "DISABLE_TELEMETRY")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "home"), HF_HUB_CACHE=str(tmp_path / "c"),
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    code = ("import json; from huggingface_hub import hf_hub_download as d, constants as c; "
            f"print(json.dumps([d({REPO!r}, 'config.json'), c.ENDPOINT, c.HF_HUB_CACHE, c.HF_HUB_OFFLINE]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path, endpoint, hub_cache, offline = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(path).read_bytes() == CONFIG and Path(path).is_relative_to(tmp_path / "c")
    assert (endpoint, hub_cache, offline) == (hub.endpoint, str(tmp_path / "c"), False)
    # The first request of a process (telemetry not disabled) also fetches the AI-agent registry from the endpoint.
    assert hub.requests == [("GET", "/api/agent-harnesses"),
                            ("HEAD", "/acme/tiny/resolve/main/config.json"),
                            ("GET", "/acme/tiny/resolve/main/config.json")]


# --------------------------------------------------------------------------- not found


def test_unknown_repo_revision_and_file(hub, cache):
    with pytest.raises(RepositoryNotFoundError, match="acme/nope") as e:
        hf_hub_download("acme/nope", "config.json")
    assert e.value.response.status_code == 401 and e.value.response.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(RevisionNotFoundError, match="resolve/v9/config.json"):
        hf_hub_download(REPO, "config.json", revision="v9")
    with pytest.raises(RemoteEntryNotFoundError, match="acme/tiny/resolve/main/missing.bin") as e:
        hf_hub_download(REPO, "missing.bin")
    assert isinstance(e.value, EntryNotFoundError)  # what timm catches to fall back to pytorch_model.bin
    # a missing file is remembered in .no_exist/<commit>/ (from the X-Repo-Commit of the 404)
    assert (repo_cache(cache) / ".no_exist" / hub.commit_sha(REPO) / "missing.bin").is_file()
    assert try_to_load_from_cache(REPO, "missing.bin") is _CACHED_NO_EXIST
    assert not (repo_cache(cache, "acme/nope") / "blobs").exists()


def test_not_found_fault_on_a_file(hub, cache):
    hub.set_fault(REPO, "model.safetensors", "not_found")
    with pytest.raises(RemoteEntryNotFoundError, match="model.safetensors"):
        hf_hub_download(REPO, "model.safetensors")
    assert_no_partial_or_bad_file(cache)
    marker = repo_cache(cache) / ".no_exist" / hub.commit_sha(REPO) / "model.safetensors"
    assert marker.is_file()

    path = assert_recovers(hub, "model.safetensors")  # hf_hub_download itself ignores .no_exist
    # ...but the stale marker survives the successful download: try_to_load_from_cache still says "does not exist"
    assert marker.is_file()
    assert try_to_load_from_cache(REPO, "model.safetensors") is _CACHED_NO_EXIST
    assert Path(path).read_bytes() == WEIGHTS


def test_not_found_fault_on_the_repo(hub, cache):
    hub.set_fault(REPO, None, "not_found")
    with pytest.raises(RepositoryNotFoundError, match="acme/tiny"):
        hf_hub_download(REPO, "config.json")
    assert_no_partial_or_bad_file(cache)
    assert_recovers(hub, "config.json")


def test_not_found_on_a_cached_file(hub, cache):
    path = hf_hub_download(REPO, "config.json")
    # repo gone (401 RepoNotFound) is treated like "Hub unreachable": the cached file is returned
    hub.set_fault(REPO, None, "not_found")
    assert hf_hub_download(REPO, "config.json") == path
    # file gone (404 EntryNotFound) raises even though the file is cached
    hub.set_fault(REPO, "config.json", "not_found")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "config.json")
    assert Path(path).read_bytes() == CONFIG


# --------------------------------------------------------------------------- server errors


def test_server_error_on_metadata(hub, cache):
    hub.set_fault(REPO, "model.safetensors", "server_error")
    with pytest.raises(LocalEntryNotFoundError, match="cannot find the requested files in the local cache") as e:
        hf_hub_download(REPO, "model.safetensors")
    cause = e.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response.status_code == 500
    assert "model.safetensors" in str(cause)
    # first HEAD without retry, then (file not cached) a second attempt with 5 backoff retries: 7 HEADs, no GET
    assert hub.requests == [("HEAD", "/acme/tiny/resolve/main/model.safetensors")] * 7
    assert_no_partial_or_bad_file(cache)
    assert_recovers(hub, "model.safetensors")


def test_server_error_on_download(hub, cache):
    hub.set_fault(REPO, "model.safetensors", "server_error", on="get")
    with pytest.raises(HfHubHTTPError, match="500 Internal Server Error.*model.safetensors") as e:
        hf_hub_download(REPO, "model.safetensors")
    assert e.value.response.status_code == 500
    assert [(r.method, r.server, r.status) for r in hub.log] == [("HEAD", "hub", 302), ("GET", "cdn", 500)]
    assert_no_partial_or_bad_file(cache)
    assert_recovers(hub, "model.safetensors")


def test_transient_server_error_is_retried(hub, cache):
    hub.set_fault(REPO, "config.json", "server_error", times=1)
    path = hf_hub_download(REPO, "config.json")
    assert Path(path).read_bytes() == CONFIG
    assert [(r.method, r.status) for r in hub.log] == [("HEAD", 500), ("HEAD", 200), ("GET", 200)]


# --------------------------------------------------------------------------- broken bodies


@pytest.mark.parametrize("filename", ["model.safetensors", "config.json"])
def test_drop(hub, cache, filename):
    hub.set_fault(REPO, filename, "drop")
    with pytest.raises(httpx2.ReadError, match="Connection reset by peer"):
        hf_hub_download(REPO, filename)
    assert [r.method for r in hub.log] == ["HEAD", "GET"]  # a reset is not retried by http_get
    assert_no_partial_or_bad_file(cache)
    assert_recovers(hub, filename)


def test_truncate(hub, cache):
    hub.set_fault(REPO, "model.safetensors", "truncate")
    with pytest.raises(httpx2.RemoteProtocolError,
                       match=r"peer closed connection without sending complete message body "
                             r"\(received 150000 bytes, expected 300000\)"):
        hf_hub_download(REPO, "model.safetensors")
    # 1 GET + 5 resume attempts; the partial data sat in httpx's 10 MiB chunk buffer, so nothing was resumed
    assert [(r.method, r.server, r.range) for r in hub.log] == [("HEAD", "hub", None)] + [("GET", "cdn", None)] * 6
    assert_no_partial_or_bad_file(cache)
    assert_recovers(hub, "model.safetensors")


def test_truncate_once_is_resumed_with_range(hub, cache, monkeypatch):
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # so that partial data reaches the file
    hub.set_fault(REPO, "model.safetensors", "truncate", times=1)
    path = hf_hub_download(REPO, "model.safetensors")
    assert Path(path).read_bytes() == WEIGHTS
    gets = [(r.status, r.range) for r in hub.log if r.method == "GET"]
    assert gets == [(200, None), (206, "bytes=131072-")]


# --------------------------------------------------------------------------- timeouts


def wait_until_idle(hub: FakeHub, limit: float) -> float:
    t0 = time.monotonic()
    while hub.busy_handlers() and time.monotonic() - t0 < limit:
        time.sleep(0.02)
    return time.monotonic() - t0


def test_timeout_on_metadata(hub, cache):
    hub.set_fault(REPO, "model.safetensors", "timeout")
    t0 = time.monotonic()
    with pytest.raises(LocalEntryNotFoundError) as e:
        hf_hub_download(REPO, "model.safetensors")
    assert time.monotonic() - t0 < 7 * CLIENT_TIMEOUT + 2
    assert isinstance(e.value.__cause__, httpx2.ReadTimeout)
    assert [(r.method, r.status) for r in hub.log] == [("HEAD", None)] * 7  # never answered
    assert_no_partial_or_bad_file(cache)
    assert wait_until_idle(hub, STALL + 2) <= STALL + 1  # stalled handlers end by themselves
    assert_recovers(hub, "model.safetensors")


def test_default_stall_outlasts_the_client_timeouts(cache):
    assert FakeHub().stall_time() == CLIENT_TIMEOUT + 0.5  # fast_retries also set the 60 s retry timeout to 0.3
    assert FakeHub(stall_seconds=STALL).stall_time() == STALL


def test_timeout_on_download(hub, cache):
    hub.set_fault(REPO, "model.safetensors", "timeout", on="get")
    with pytest.raises(httpx2.ReadTimeout):
        hf_hub_download(REPO, "model.safetensors")
    assert [(r.method, r.server) for r in hub.log] == [("HEAD", "hub")] + [("GET", "cdn")] * 6
    assert_no_partial_or_bad_file(cache)
    assert_recovers(hub, "model.safetensors")


# --------------------------------------------------------------------------- checksums


@pytest.mark.parametrize("filename", ["model.safetensors", "config.json"])
def test_bad_checksum_is_not_detected_by_hf_hub_download(hub, cache, filename):
    hub.set_fault(REPO, filename, "bad_checksum")
    path = hf_hub_download(REPO, filename)  # no exception: 2.4.0 checks the size only
    good = hub.file_sha256(REPO, filename)
    assert sha256(path) != good and os.path.getsize(path) == SIZES[filename]
    assert Path(os.path.realpath(path)).name == hub.etag(REPO, filename)  # stored under the announced etag

    # The corrupted blob poisons the cache: a plain retry only HEADs, sees the same etag, returns the bad file.
    hub.clear_faults()
    hub.reset_log()
    assert hf_hub_download(REPO, filename) == path and sha256(path) != good
    assert [r.method for r in hub.log] == ["HEAD"]
    # Recovery: force_download, or delete blob + pointer and download again.
    assert sha256(hf_hub_download(REPO, filename, force_download=True)) == good
    hub.set_fault(REPO, filename, "bad_checksum")
    bad = hf_hub_download(REPO, filename, force_download=True)
    assert sha256(bad) != good
    os.remove(os.path.realpath(bad))
    os.remove(bad)
    assert_recovers(hub, filename)


# --------------------------------------------------------------------------- hub down / back


def test_hub_unreachable_then_back(hub, cache):
    cfg = hf_hub_download(REPO, "config.json")
    hub.stop()
    assert hf_hub_download(REPO, "config.json") == cfg  # cached: served from cache although online
    with pytest.raises(LocalEntryNotFoundError) as e:
        hf_hub_download(REPO, "model.safetensors")
    assert isinstance(e.value.__cause__, httpx2.ConnectError)
    assert not (repo_cache(cache) / "blobs" / hub.etag(REPO, "model.safetensors")).exists()
    assert not [e for e in cache_entries(cache) if e.endswith(".incomplete")]

    hub.start()  # same endpoint
    hub.reset_log()
    assert_recovers(hub, "model.safetensors")
    assert [r.server for r in hub.log] == ["hub", "cdn"]


# --------------------------------------------------------------------------- timm end to end


def test_timm_save_for_hf_folder_loads_through_the_fake_hub(hub, cache, tmp_path, monkeypatch):
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=3)
    save_for_hf(model, tmp_path / "export", safe_serialization=True)
    assert sorted(os.listdir(tmp_path / "export")) == ["config.json", "model.safetensors"]
    hub.add_folder("acme/timm-tiny", tmp_path / "export")

    loaded = timm.create_model("hf-hub:acme/timm-tiny", pretrained=True)
    assert loaded.num_classes == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert {r.filename for r in hub.log if r.method == "GET"} == {"config.json", "model.safetensors"}

    hub.reset_log()
    set_offline(monkeypatch, True)
    timm.create_model("hf-hub:acme/timm-tiny", pretrained=True)
    assert hub.requests == []
