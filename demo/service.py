"""The inference service: models loaded lazily and kept in a memory-bounded
cache, classification, and Swin forwards with their attention captured.

No Gradio here: functions take and return plain values (PIL images, strings,
numbers, numpy arrays, dataclasses), so the tests call them directly.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, TypeVar

import numpy as np
import torch
import tqdm
from PIL import Image

import models
from demo.batching import MicroBatcher
from demo.cores import CoreWorkers
from demo.memory import release_free_memory

# Progress callback: (fraction done or None, what is happening).
Report = Callable[[float | None, str], None]

K, V = TypeVar("K", bound=Hashable), TypeVar("V")

logger = logging.getLogger(__name__)


def _env_number(name: str, default: float, minimum: float = 0.0) -> float:
    """A number from the environment; ``default`` when unset, not a finite
    number, or below ``minimum`` (a typo must not take the app down, or leave
    it refusing every upload)."""
    value = os.environ.get(name, "").strip()
    try:
        number = float(value) if value else default
    except ValueError:
        return default
    return number if math.isfinite(number) and number >= minimum else default


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """What an operator can tune, from environment variables (defaults in brackets).

    ``APP_MODEL_CACHE_MB`` [2500]: parameter bytes of models kept loaded;
    least recently used models are dropped beyond it (a larger model still
    loads, alone). ``APP_ATTENTION_CACHE_MB`` [512]: captured Swin attention
    kept so that clicking around re-uses one forward. ``APP_MAX_PIXELS``
    [40000000]: larger images are refused before decoding.
    ``APP_MAX_UPLOAD_MB`` [25]: larger uploads are refused by the server.
    ``APP_CONCURRENCY`` [1]: model forwards with every thread running at
    once (a lone request's forward; requests that queue, classifications and
    the Swin views' forwards alike, get concurrency x threads
    single-threaded forwards side by side, one per core).
    ``APP_QUEUE_SIZE`` [64]: requests waiting at most; more are turned away.
    ``APP_TORCH_THREADS`` [CPUs / concurrency]: threads per forward.
    ``APP_DOWNLOAD_RETRY_S`` [120]: after the Hub failed for a model, how long
    to answer from that failure before asking the Hub again.
    """

    model_cache_mb: float = 2500
    attention_cache_mb: float = 512
    max_pixels: int = 40_000_000
    max_upload_mb: float = 25
    concurrency: int = 1
    queue_size: int = 64
    torch_threads: int = 1
    download_retry_s: float = 120

    @classmethod
    def from_env(cls) -> "Settings":
        concurrency = int(_env_number("APP_CONCURRENCY", 1, minimum=1))
        return cls(
            model_cache_mb=_env_number("APP_MODEL_CACHE_MB", 2500),
            attention_cache_mb=_env_number("APP_ATTENTION_CACHE_MB", 512),
            max_pixels=int(_env_number("APP_MAX_PIXELS", 40_000_000, minimum=1)),
            max_upload_mb=_env_number("APP_MAX_UPLOAD_MB", 25, minimum=0.001),
            concurrency=concurrency,
            queue_size=int(_env_number("APP_QUEUE_SIZE", 64, minimum=1)),
            torch_threads=int(_env_number("APP_TORCH_THREADS", max(1, available_cpus() // concurrency), minimum=1)),
            download_retry_s=_env_number("APP_DOWNLOAD_RETRY_S", 120),
        )


class ByteLRU(Generic[K, V]):
    """A thread-safe least-recently-used cache bounded by the bytes of its values.

    An entry larger than the bound is still kept, alone: the cache never
    refuses the value just computed.
    """

    def __init__(self, max_bytes: float, size_of: Callable[[V], int]):
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> list[K]:
        """Store ``value``; returns the keys evicted to make room."""
        size = self._size_of(value)
        evicted = []
        with self._lock:
            self._entries.pop(key, None)
            while self._entries and self.total_bytes + size > self.max_bytes:
                old_key, _ = self._entries.popitem(last=False)
                evicted.append(old_key)
            self._entries[key] = (value, size)
        return evicted

    def remove_where(self, predicate: Callable[[K], bool]) -> list[K]:
        """Drop every entry whose key satisfies ``predicate``; returns their keys."""
        with self._lock:
            doomed = [key for key in self._entries if predicate(key)]
            for key in doomed:
                del self._entries[key]
        return doomed

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._entries)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes held by a model's parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def download_progress(report: Report | None) -> type[tqdm.tqdm] | None:
    """A tqdm class for ``create_model(tqdm_class=...)`` that tells ``report``
    how far each download is."""
    if report is None:
        return None

    class DownloadProgress(tqdm.tqdm):
        def update(self, n=1):
            shown = super().update(n)
            if self.total:
                report(min(1.0, self.n / self.total), f"Downloading {self.desc or 'weights'}")
            return shown

    return DownloadProgress


@dataclass
class LoadedModel:
    model: torch.nn.Module
    pretrained: bool
    # Why the model runs untrained, in a sentence; "" when it is pretrained.
    notice: str = ""

    @property
    def name(self) -> str:
        return self.model.spec.name


def load_for_inference(name: str, pretrained: bool = False, **options) -> torch.nn.Module:
    """``models.create_model``, prepared for inference on CPU
    (``models.prepare_for_inference``: the EfficientNets fold BatchNorm into
    their convolutions and run channels-last, in 20-35 % less time here).
    What loading frees (a checkpoint read from disk, the BatchNorms, the
    k x k kernels copied to channels-last) goes back to the kernel, or the
    next model loaded would come on top of it (the model-loading test in
    tests/test_reliability.py holds the peak to its bound)."""
    model = models.prepare_for_inference(models.create_model(name, pretrained, **options))
    release_free_memory()
    return model


RELEASE_DELAY_S = 1.0


def _release_memory_soon() -> None:
    """``release_free_memory`` in a moment, on a thread of its own: a weakref
    callback runs before the object's attributes (the weights) are freed."""
    timer = threading.Timer(RELEASE_DELAY_S, release_free_memory)
    timer.daemon = True
    timer.start()


class ModelCache:
    """Models loaded on first use, once even under concurrent requests, and
    kept while their parameters fit in ``max_bytes`` (least recently used
    dropped first). ``on_evict(key)`` is told of each model dropped, so that
    nothing else keeps it alive."""

    def __init__(self, max_bytes: float, download_retry_s: float = 120,
                 create: Callable[..., torch.nn.Module] = load_for_inference,
                 on_evict: Callable[[tuple[str, bool]], None] | None = None):
        self._models: ByteLRU[tuple[str, bool], torch.nn.Module] = ByteLRU(max_bytes, parameter_bytes)
        self._create = create
        self._on_evict = on_evict
        self._retry_s = download_retry_s
        self._failures: dict[str, tuple[float, models.WeightsUnavailableError]] = {}
        self._locks: dict[tuple[str, bool], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def get(self, name: str, pretrained: bool, report: Report | None = None) -> torch.nn.Module:
        """The model, loading it if needed. Raises ``WeightsUnavailableError``
        (from the Hub, or remembered from a failure less than
        ``download_retry_s`` ago), also for weights that came but do not fit
        the architecture: that model is never returned."""
        name = models.get_spec(name).name
        key = (name, pretrained)
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock_for(key):
            model = self._models.get(key)
            if model is not None:
                return model
            if pretrained:
                self._raise_if_known_unavailable(name)
            if report:
                report(None, f"Loading {name}")
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)  # untrained weights: the same random model every time
                    model = self._create(name, pretrained=pretrained, tqdm_class=download_progress(report))
            except models.WeightsUnavailableError as error:
                self._failures[name] = (time.monotonic(), error)
                raise
            except models.CheckpointMismatchError as error:
                unusable = _unusable_weights(name, error)
                self._failures[name] = (time.monotonic(), unusable)
                raise unusable from error
            if pretrained:
                self._failures.pop(name, None)
            # A dropped model's weights become free blocks inside the heap: back
            # to the kernel with them now (usually nothing else holds the model),
            # and again when the model is gone, if a request still held it.
            weakref.finalize(model, _release_memory_soon).atexit = False
            evicted = self._models.put(key, model)
            for dropped in evicted:
                if self._on_evict is not None:
                    self._on_evict(dropped)
            if evicted:
                release_free_memory()
            return model

    def _raise_if_known_unavailable(self, name: str) -> None:
        """Fail before building the model when the weights cannot come: the Hub
        failed for them a moment ago, or offline mode is on and they are not cached."""
        from huggingface_hub import constants

        failure = self._failures.get(name)
        recent = failure is not None and time.monotonic() - failure[0] < self._retry_s
        if recent and isinstance(failure[1].__cause__, models.CheckpointMismatchError):
            raise failure[1]  # the checkpoint is in the cache and would fail again
        status = models.weights_status(name)
        if status != "download":
            return
        if recent:
            raise failure[1]
        if constants.HF_HUB_OFFLINE:
            raise models.WeightsUnavailableError(
                f"Could not get the weights of {models.get_spec(name).hf_hub_id} from the Hugging Face Hub: "
                "offline mode is on (HF_HUB_OFFLINE) and they are not in the local cache.")

    def loaded(self) -> list[tuple[str, bool]]:
        return self._models.keys()

    def _lock_for(self, key: tuple[str, bool]) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())


def _unusable_weights(name: str, error: models.CheckpointMismatchError) -> models.WeightsUnavailableError:
    """A checkpoint that does not fit, in one sentence for the user; the keys go to the log."""
    logger.warning("%s", error)
    kinds = [kind for kind in ("missing keys", "unexpected keys", "shape mismatch", "non-finite values")
             if kind in str(error)]
    return models.WeightsUnavailableError(
        f"The weights of {models.get_spec(name).hf_hub_id} from the Hugging Face Hub do not fit {name} "
        f"({', '.join(kinds) or 'their tensors do not match'}), so they were not used.")


@dataclass
class Classification:
    probabilities: dict[str, float]   # top-k class name -> softmax probability, most likely first
    milliseconds: float               # the model's forward alone (of the whole batch)
    model_name: str
    pretrained: bool
    batch_size: int = 1               # images in the forward that answered this request
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the image as uploaded


_forward_serials = itertools.count()


@dataclass
class SwinForward:
    """One Swin forward on one image, with everything the views need."""
    model: torch.nn.Module
    pretrained: bool
    notice: str                         # why the weights are untrained; "" when pretrained
    model_input: np.ndarray             # uint8 [H, W, 3]: what the model saw, denormalised
    records: list[models.AttentionRecord] = field(repr=False)
    # Unique for the process's lifetime (unlike id()): keys what is drawn from this forward.
    serial: int = field(default_factory=lambda: next(_forward_serials), repr=False)

    @property
    def nbytes(self) -> int:
        return self.model_input.nbytes + sum(r.attention.numel() * r.attention.element_size() for r in self.records)


def untrained_notice(name: str, error: Exception | None) -> str:
    if error is None:
        return f"{name} has no pretrained weights, so it runs with untrained (random) weights."
    return f"{error} These views use untrained (random) weights."


# What the process needs beside its models' parameters (Python, PyTorch,
# Gradio, the attention and drawing caches, the forwards' activations): the
# README states APP_MODEL_CACHE_MB + this as the bound on resident memory.
PROCESS_MEMORY_MB = 1536


def resident_memory_bound_mb(settings: Settings) -> float:
    """The most resident memory the app should use, in MiB (the README's bound)."""
    return settings.model_cache_mb + PROCESS_MEMORY_MB


# Classification requests that queue while forwards run are answered in
# batches of at most this many images.
CLASSIFY_MAX_BATCH = 8
# Drawn Swin view frames and window grids kept (about 1 MB each).
DRAWING_CACHE_MB = 128


def softmax_forward(items: list[tuple[torch.nn.Module, torch.Tensor]]) -> list[torch.Tensor]:
    """Softmax probabilities ``[num_classes]`` per (model, image ``[3, H, W]``)
    item, in one forward (every item of one model and size)."""
    model = items[0][0]
    x = items[0][1].unsqueeze(0) if len(items) == 1 else torch.stack([image for _, image in items])  # [B, 3, H, W]
    with torch.inference_mode():
        return list(model(x).float().softmax(dim=-1))


def captured_forwards(items: list[tuple[torch.nn.Module, torch.Tensor]]) -> list[list[models.AttentionRecord]]:
    """Per (Swin, image ``[3, H, W]``) item: the attention records of its forward."""
    captured = []
    for model, x in items:
        with torch.inference_mode(), models.capture_attention(model) as records:
            model(x.unsqueeze(0))
        captured.append(list(records))
    return captured


class InferenceService:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.models = ModelCache(self.settings.model_cache_mb * 2**20, self.settings.download_retry_s,
                                 on_evict=self._forget_forwards)
        self._forwards: ByteLRU[tuple, SwinForward] = ByteLRU(
            self.settings.attention_cache_mb * 2**20, lambda f: f.nbytes)
        # The views' frames (per architecture and stage, demo/frames.py) and
        # the window grids of each forward (demo/panels.py).
        self.drawings: ByteLRU[tuple, np.ndarray] = ByteLRU(DRAWING_CACHE_MB * 2**20, lambda a: a.nbytes)
        # A lane per core: a lone request's forward holds the `torch_threads`
        # lanes of its threads; requests that queue get single-threaded
        # forwards, one per lane (on `_cores`).
        threads = self.settings.torch_threads
        lanes = self.settings.concurrency * threads
        self.classifier = MicroBatcher(self._run_batch, max_batch=CLASSIFY_MAX_BATCH, lanes=lanes,
                                       wide_lanes=threads)
        self._cores = CoreWorkers(lanes) if threads > 1 else None

    # ------------------------------------------------------------------ classification
    def classify(self, image: Image.Image, name: str, top_k: int = 5,
                 report: Report | None = None) -> Classification:
        """Top-k softmax probabilities of ``name`` on ``image`` (RGB PIL).

        Models with pretrained weights use them; raises
        ``WeightsUnavailableError`` when they cannot be had. Architectures with
        none (``swin_cifar``) run untrained, ``pretrained=False`` in the result.

        A request that finds the CPU free gets one forward with
        ``settings.torch_threads`` threads. Requests for the same model that
        arrive while forwards run wait and are answered in batches (at most
        ``CLASSIFY_MAX_BATCH`` images), by single-threaded forwards side by
        side, one per core (:attr:`classifier`).
        """
        spec = models.get_spec(name)
        pretrained = models.weights_status(spec.name) != "untrained"
        model = self.models.get(spec.name, pretrained, report)
        x = models.create_transform(model.spec)(image)  # [3, H, W], in this request's thread
        # Items of one key are batched together: same model object, same input size.
        probabilities, milliseconds, batch_size = self.classifier.submit(
            ("classify", id(model), tuple(x.shape)), (model, x))
        k = max(1, min(int(top_k), probabilities.numel()))
        values, indices = probabilities.topk(k)
        labels = model.spec.labels
        return Classification(
            probabilities={labels[i]: float(p) for p, i in zip(values.tolist(), indices.tolist())},
            milliseconds=milliseconds, model_name=spec.name, pretrained=pretrained, batch_size=batch_size,
            image_size=image.info.get("original_size", image.size))  # before demo.images cut a strip

    def _run_batch(self, key, items: list[tuple[torch.nn.Module, torch.Tensor]], wide: bool = True) -> list:
        """The forwards of several requests, all of one kind, model and size
        (``key``): ``items`` are (model, image tensor ``[3, H, W]``).
        ``"classify"``: one batched forward; per item (softmax probabilities
        ``[num_classes]``, forward milliseconds, batch size). ``"swin"``: one
        forward per item with its attention captured; per item its records.
        ``wide``: in this thread, with its ``torch_threads`` threads (the
        process default); otherwise on a single-threaded core worker
        (demo/cores.py)."""
        work = captured_forwards if key[0] == "swin" else softmax_forward
        start = time.perf_counter()
        results = self._cores.run(work, items) if self._cores is not None and not wide else work(items)
        if key[0] == "swin":
            return results
        milliseconds = (time.perf_counter() - start) * 1000
        return [(row, milliseconds, len(items)) for row in results]

    # ------------------------------------------------------------------ Swin
    def load_for_views(self, name: str, report: Report | None = None) -> LoadedModel:
        """A Swin for the views: pretrained when the weights can be had,
        otherwise untrained, with the reason in ``notice``."""
        spec = models.get_spec(name)
        if not spec.is_swin:
            raise ValueError(f"{spec.name} is not a Swin Transformer; choose a Swin Transformer for these views.")
        if models.weights_status(spec.name) == "untrained":
            return LoadedModel(self.models.get(spec.name, False, report), False, untrained_notice(spec.name, None))
        try:
            return LoadedModel(self.models.get(spec.name, True, report), True)
        except models.WeightsUnavailableError as error:
            return LoadedModel(self.models.get(spec.name, False, report), False, untrained_notice(spec.name, error))

    def _forget_forwards(self, model_key: tuple[str, bool]) -> None:
        """Captured forwards hold their model: drop those of a model the cache
        dropped, or it would stay in memory beyond the cache's bound."""
        self._forwards.remove_where(lambda key: key[:2] == model_key)

    def swin_forward(self, image: Image.Image, name: str, report: Report | None = None) -> SwinForward:
        """Run a Swin on ``image`` with its attention captured; the same image
        and model again are answered from a cache."""
        loaded = self.load_for_views(name, report)
        model = loaded.model
        x = models.create_transform(model.spec)(image)
        model_input = models.model_input_image(x, model.spec.mean, model.spec.std)
        key = (loaded.name, loaded.pretrained, hashlib.sha1(model_input.tobytes()).hexdigest())
        cached = self._forwards.get(key)
        if cached is not None:
            return cached
        if report:
            report(None, f"Running {loaded.name}")
        # In the classification's queue and on its workers: the views share
        # the cores with classification in arrival order, and never run
        # beside a forward that has every core.
        records = self.classifier.submit(("swin", id(model), tuple(x.shape)), (model, x))
        forward = SwinForward(model, loaded.pretrained, loaded.notice, model_input, records)
        self._forwards.put(key, forward)
        return forward


def configure_torch(settings: Settings) -> None:
    """Threads per forward so that ``concurrency`` forwards share the CPUs without oversubscription."""
    torch.set_num_threads(settings.torch_threads)
