"""A model's forward recorded once per architecture and input size, and run
without Python between its operations.

Each PyTorch operation called from Python takes Python's global lock (the
GIL) on its way in and out. In the app the web server needs that lock too,
and on 2 cores an EfficientNet-Lite0 forward beside a busy Python thread took
650 ms instead of 15: its ~250 operations each waited for the lock. A
recording (``torch.jit.trace``) runs the same operations on the same
tensors, in the same order, in C++ with the lock released: the results are
the same bit for bit.

The recording takes the model's parameters and buffers as inputs, so it
holds no weights: the models of one architecture share it, a model loaded
again reuses it, and what TorchScript keeps per recording (for the
process's lifetime: it has a process-wide registry) stays bounded by the
architectures and input sizes used, at most ``MAX_GRAPHS``.
"""
from __future__ import annotations

import threading
import warnings
from typing import Sequence

import torch
from torch import nn

# Recordings (and refusals) kept for the process's lifetime, one per
# architecture and input size; models beyond them run their Python forward.
MAX_GRAPHS = 16
_graphs: dict[tuple, torch.jit.ScriptFunction | None] = {}
_lock = threading.Lock()


def _slots(model: nn.Module) -> list[tuple[dict, str]]:
    """Where each parameter and buffer of ``model`` lives: (its module's
    ``_parameters`` or ``_buffers``, name), in a fixed order."""
    slots = []
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            slots += [(store, name) for name, tensor in store.items() if tensor is not None]
    return slots


class RecordedForward:
    """``model(x)`` for inputs ``[B, *input_size]`` (float32, CPU), without
    Python between the operations; made by :func:`record_forward`. Reads the
    model's parameters and buffers at each call (the ones it has then), and
    holds no reference to the model itself."""

    def __init__(self, graph: torch.jit.ScriptFunction, slots: list[tuple[dict, str]], input_size: torch.Size):
        self._graph = graph
        self._slots = slots
        self.input_size = input_size

    def accepts(self, x: torch.Tensor) -> bool:
        """Whether this recording may answer for the model on ``x`` (else call the model)."""
        return (x.dim() == len(self.input_size) + 1 and x.shape[1:] == self.input_size
                and x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.accepts(x):
            raise ValueError(f"This recorded forward takes float32 CPU inputs [B, {', '.join(map(str, self.input_size))}] "
                             f"without gradients; got {x.dtype} {x.device.type} {list(x.shape)}.")
        tensors = [store[name] for store, name in self._slots]
        with torch.jit.optimized_execution(False):  # the recorded operations as they are, no rewriting (thread-local)
            return self._graph(x, *tensors)


def record_forward(model: nn.Module, input_size: Sequence[int] | None = None) -> RecordedForward | None:
    """A :class:`RecordedForward` for ``model`` (in eval mode, float32 on
    CPU) on inputs ``[B, *input_size]`` (default: ``model.spec.input_size``),
    or None where the model does not allow one (only models whose class sets
    ``recordable = True``: their forward reads nothing but the input, their
    parameters and buffers, with no branch on the input's values), the
    recording cannot be made, does not give the model's own results bit for
    bit, or ``MAX_GRAPHS`` are kept already.

    Models of one architecture (same class, same layers, same tensor
    names, shapes and dtypes) share one recording per input size: the
    first is recorded and checked against the Python forward on another
    random batch of 2; the others reuse it. Call it before the model is
    used from other threads: recording swaps its parameters for a moment.
    """
    if not getattr(model, "recordable", False) or model.training:
        return None
    input_size = torch.Size(input_size if input_size is not None else model.spec.input_size)
    slots = _slots(model)
    tensors = [store[name] for store, name in slots]
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors if t.is_floating_point()):
        return None
    key = (tuple(input_size), _structure(model),
           tuple((name, tuple(store[name].shape), store[name].dtype) for store, name in slots))
    with _lock:
        if key not in _graphs:
            if len(_graphs) >= MAX_GRAPHS:
                return None
            _graphs[key] = _record(model, slots, input_size)
        graph = _graphs[key]
    return RecordedForward(graph, slots, input_size) if graph is not None else None


_PLAIN = (bool, int, float, str, type(None))


def _structure(model: nn.Module) -> tuple:
    """What the forward's Python may branch on, per module: its name, its
    class, its settings (``extra_repr``) and its plain attributes (flags
    such as ``has_shortcut``, sizes)."""
    def plain(value) -> bool:
        return isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))

    return tuple((path, type(module).__module__, type(module).__qualname__, module.extra_repr(),
                  tuple(sorted((name, value) for name, value in vars(module).items() if plain(value))))
                 for path, module in model.named_modules())


def _record(model: nn.Module, slots: list[tuple[dict, str]], input_size: torch.Size):
    """The traced forward (inputs: the image batch, then the tensors of
    ``slots``), or None when it cannot be made or is not exact."""
    generator = torch.Generator().manual_seed(0)
    example = torch.randn((1, *input_size), generator=generator)
    check = torch.randn((2, *input_size), generator=generator)  # other values, another batch size
    originals = [store[name] for store, name in slots]

    def forward(x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
        try:
            for (store, name), tensor in zip(slots, tensors):
                store[name] = tensor  # traced as inputs, not as constants of the graph
            return model(x)
        finally:
            for (store, name), tensor in zip(slots, originals):
                store[name] = tensor

    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.trace's deprecation; TracerWarnings on the "same" paddings
            graph = torch.jit.trace(forward, (example, *originals), check_trace=False)
            # torch.jit.trace keeps the traced Python function on the result (for
            # torch.compile), and with it this model: the recording is for all.
            graph.__dict__.pop("_torchdynamo_inline", None)
            if not _self_contained(graph.graph):
                return None
            with torch.jit.optimized_execution(False):
                exact = torch.equal(graph(check, *originals), model(check))
    except Exception:  # noqa: BLE001 - the recording is an optimisation; the model runs without it
        return None
    return graph if exact else None


def _self_contained(graph: torch._C.Graph) -> bool:
    """No Python calls (they would take the GIL) and no tensor data baked in
    (a tensor the forward read that is not an input: it would be stale for
    the next model and kept for good); 0-dim integer constants (sizes) are fine."""
    for node in graph.nodes():
        if node.kind() == "prim::PythonOp":
            return False
        if node.kind() == "prim::Constant" and node.hasAttribute("value") and node.kindOf("value") == "t":
            value = node.t("value")
            if value.dim() > 0 or value.is_floating_point() or value.is_complex():
                return False
    return True
