"""Explanations for the app: one image, one model from the service's cache,
one method, one class; with the deletion / insertion scores beside a random
map's. No Gradio here: plain values in and out (tests call it directly).
"""
from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

import explain
import models
from demo.service import InferenceService
from explain import faithfulness, pictures, sanity


class ExplanationError(ValueError):
    """A request that cannot be explained; the message is one sentence."""


@dataclass
class Explanation:
    model_name: str
    pretrained: bool
    method: str
    class_name: str
    class_index: int
    probability: float
    model_input: np.ndarray            # uint8 [H, W, 3]: what the model saw
    saliency: np.ndarray               # float32 [H, W], min 0, max 1
    seconds: float                     # the map and its scores
    faithfulness: faithfulness.Faithfulness | None = field(default=None, repr=False)
    top: dict[str, float] = field(default_factory=dict)   # top-5 classes -> probability

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.saliency.shape)

    def summary(self) -> dict:
        """The API's JSON summary."""
        scores = self.faithfulness.scores() if self.faithfulness is not None else {}
        return {
            "class": self.class_name, "class_index": self.class_index, "probability": round(self.probability, 6),
            "method": self.method, "architecture": self.model_name, "pretrained": self.pretrained,
            "input_size": list(self.input_size),
            **{key: round(value, 6) for key, value in scores.items()},
            "beats_random": None if self.faithfulness is None else bool(self.faithfulness.beats_random),
            "sanity_check": sanity_status(self.model_name, self.method),
            "seconds": round(self.seconds, 3),
            "top": {name: round(p, 6) for name, p in self.top.items()},
        }

    def overlay(self, opacity: float = 0.5) -> np.ndarray:
        return pictures.overlay(self.model_input, self.saliency, opacity)


def sanity_status(architecture: str, method: str) -> str:
    """``"passed"``, ``"failed"`` or ``"not checked"`` (no recorded result for this architecture)."""
    entry = sanity.load_results().get(architecture, {}).get(method)
    if entry is None:
        return "not checked"
    return "passed" if entry["passed"] else "failed"


def methods_for_architecture(name: str) -> list[str]:
    """Every method that applies to the architecture (by its spec, without loading it)."""
    spec = models.get_spec(name)
    return [m for m in explain.METHODS if spec.is_swin or m not in explain.SWIN_ONLY]


def offered_methods(name: str) -> tuple[list[str], dict[str, str]]:
    """(methods the page offers, {method held back: why}): those that failed
    the sanity check are held back."""
    failing = sanity.failing_methods(models.get_spec(name).name)
    methods = methods_for_architecture(name)
    return [m for m in methods if m not in failing], {m: why for m, why in failing.items() if m in methods}


def check_request(name: str, method: str) -> models.ModelSpec:
    """The spec, once architecture and method are known to fit (before any model is loaded)."""
    try:
        spec = models.get_spec(name)
    except ValueError as error:
        raise ExplanationError(str(error)) from error
    if method not in explain.METHODS:
        raise ExplanationError(f"Unknown method {method!r}; choose one of: {', '.join(explain.METHODS)}.")
    if method not in methods_for_architecture(spec.name):
        raise ExplanationError(f"{method} needs a Swin Transformer's attention and {spec.name} is a convolutional "
                               f"network; choose one of: {', '.join(methods_for_architecture(spec.name))}.")
    return spec


def parse_target(target) -> int | str:
    """A class index (int, or a whole-number float / string as gradio_client may send), a name, or "top1"."""
    if isinstance(target, float) and target.is_integer():
        return int(target)
    if target is None or (isinstance(target, str) and not target.strip()):
        return "top1"
    return target


class RandomCurvesCache:
    """The random map's deletion / insertion curves, which do not depend on
    the method: kept per (model, image, class, steps) in a small LRU, so that
    a second method on the same image costs only its own curves. The model
    is held by a weak reference and must be the very object (a reloaded or
    retrained model of the same name misses)."""

    def __init__(self, size: int = 32):
        self.size, self._entries, self._lock = size, OrderedDict(), threading.Lock()

    @staticmethod
    def key(name: str, pretrained: bool, model: torch.nn.Module, x: torch.Tensor, target: int, steps: int):
        digest = hashlib.sha256(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()
        return (name, pretrained, id(model), digest, int(target), int(steps))

    def get(self, key, model):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0]() is not model:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key, model, curves) -> None:
        with self._lock:
            self._entries[key] = (weakref.ref(model), curves)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


RANDOM_CURVES = RandomCurvesCache()


def faithfulness_scores(name: str, pretrained: bool, model: torch.nn.Module, x: torch.Tensor,
                        saliency: np.ndarray, target: int, steps: int) -> faithfulness.Faithfulness:
    """:func:`faithfulness.evaluate`, the random map's curves from
    :data:`RANDOM_CURVES` when this model, image, class and steps had them."""
    key = RANDOM_CURVES.key(name, pretrained, model, x, target, steps)
    random = RANDOM_CURVES.get(key, model)
    result = faithfulness.evaluate(model, x, saliency, target, steps=steps, random=random)
    if random is None:
        RANDOM_CURVES.put(key, model, result.random)
    return result


def explain_image(service: InferenceService, image: Image.Image, name: str, method: str, target="top1",
                  with_faithfulness: bool = True, steps: int = faithfulness.DEFAULT_STEPS) -> Explanation:
    """Explain ``name``'s prediction of ``target`` on ``image`` (RGB PIL) with
    ``method``, using the model the service has loaded (or loads) for
    classification. Raises :class:`ExplanationError` for a request that does
    not fit and ``models.WeightsUnavailableError`` when the weights cannot be had."""
    spec = check_request(name, method)
    pretrained = models.weights_status(spec.name) != "untrained"
    model = service.models.get(spec.name, pretrained)
    x = models.create_transform(model.spec)(image).unsqueeze(0)  # [1, 3, H, W]
    start = time.perf_counter()
    with torch.inference_mode():
        probabilities = model(x).float().softmax(dim=-1)[0]
    try:
        index = explain.resolve_target(model, parse_target(target), probabilities.unsqueeze(0))
    except explain.ExplainError as error:
        raise ExplanationError(str(error)) from error
    saliency = explain.make(model, method).attribute(x, index)[0].numpy().astype(np.float32)
    scores = faithfulness_scores(spec.name, pretrained, model, x, saliency, index, steps) if with_faithfulness else None
    seconds = time.perf_counter() - start
    values, indices = probabilities.topk(min(5, probabilities.numel()))
    labels = model.spec.labels
    return Explanation(
        model_name=spec.name, pretrained=pretrained, method=method, class_name=labels[index], class_index=index,
        probability=float(probabilities[index]),
        model_input=pictures.model_input_image(x, model.spec.mean, model.spec.std), saliency=saliency,
        seconds=seconds, faithfulness=scores,
        top={labels[i]: float(p) for p, i in zip(values.tolist(), indices.tolist())})
