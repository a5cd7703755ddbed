"""A model's forward recorded once per architecture and input size, and run
without Python between its operations.

Each PyTorch operation called from Python takes Python's global lock (the
GIL) on its way in and out. In the app the web server needs that lock too,
and on 2 cores an EfficientNet-Lite0 forward beside a busy Python thread took
650 ms instead of 15: its ~250 operations each waited for the lock. A
recording (``torch.jit.trace``) runs the same operations on the same
tensors, in the same order, in C++ with the lock released (22 ms beside that
busy thread): the results are the same bit for bit.

The recording takes the model's parameters and buffers as inputs, so it
holds no weights: the models of one architecture share it, a model loaded
again reuses it, and what TorchScript keeps per recording (for the
process's lifetime: it has a process-wide registry) stays bounded by the
architectures and input sizes used, at most ``MAX_GRAPHS``.
"""
from __future__ import annotations

import logging
import threading
import warnings
import weakref
from typing import Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

# What recording prints and nobody can act on: torch.jit.trace's deprecation
# notice, and its TracerWarnings on this package's Python sizes (the "same"
# paddings), which a recording serves for its one input size by design. Set
# once: warnings.catch_warnings would swap the filters of every thread while
# a model loads.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"models\.")

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
    """``model(x)`` for inputs ``[B, *input_size]`` (float32, CPU, no
    gradients, no autocast), without Python between the operations; made by
    :func:`record_forward`. It reads the model's parameters and buffers at
    each call from the modules that held them when it was recorded, so it
    follows new values and new tensors under the same names; it does not
    follow a replaced submodule, a hook added later, or a change to the
    model's code. It keeps those parameters alive, not the model; once the
    model is gone, or in training mode, it accepts nothing."""

    def __init__(self, model: nn.Module, graph: torch.jit.ScriptFunction, slots: list[tuple[dict, str]],
                 input_size: torch.Size):
        self._model = weakref.ref(model)
        self._graph = graph
        self._slots = slots
        self.input_size = input_size

    def accepts(self, x: torch.Tensor) -> bool:
        """Whether this recording may answer for the model on ``x`` (else call the model)."""
        model = self._model()
        return (model is not None and not model.training
                and x.dim() == len(self.input_size) + 1 and x.shape[1:] == self.input_size
                and x.dtype == torch.float32 and x.device.type == "cpu"
                and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.accepts(x):
            raise ValueError(f"This recorded forward takes float32 CPU inputs [B, {', '.join(map(str, self.input_size))}] "
                             f"without gradients or autocast, for its model in eval mode; got {x.dtype} "
                             f"{x.device.type} {list(x.shape)}.")
        tensors = [store[name] for store, name in self._slots]
        # A tensor that Python holds takes the GIL whenever its C++ reference
        # count goes from 2 to 1 (PyTorch keeps its Python object alive while
        # C++ shares it): inside the graph that happens at each weight's last
        # use. One more C++ reference for the whole call keeps it above 1:
        # next to a busy Python thread Lite0 took 470-490 ms without it, 22 with.
        held = torch.ScriptList([x, *tensors])
        with torch.jit.optimized_execution(False):  # the recorded operations as they are, no rewriting (thread-local)
            out = self._graph(x, *tensors)
        del held  # back under the GIL
        return out


def record_forward(model: nn.Module, input_size: Sequence[int] | None = None) -> RecordedForward | None:
    """A :class:`RecordedForward` for ``model`` (in eval mode, float32 on
    CPU) on inputs ``[B, *input_size]`` (default: ``model.spec.input_size``),
    or None where the model does not allow one (only models whose class sets
    ``recordable = True``: their forward reads nothing but the input, their
    parameters and buffers, and branches on no value; none with hooks or a
    ``forward`` of its own), the recording cannot be made, does not give the
    model's own results bit for bit, or ``MAX_GRAPHS`` are kept already.

    Models of one architecture (the same module tree, settings, flags, and
    tensor names, shapes and dtypes) share one recording per input size:
    the first is recorded and checked against the Python forward on another
    random batch, of 2; the others reuse it. Recording costs a forward at
    batch 1 and two at batch 2, once per architecture (V2-L: about 3 s here),
    and keeps the graph for the process's lifetime (TorchScript's registry:
    17 MB of resident memory after the first recording of Lite0, which also
    starts TorchScript; 25-50 MB for the EfficientNetV2s). Call it before
    the model is used from other threads: recording swaps its parameters
    for a moment.
    """
    if not getattr(model, "recordable", False) or model.training or _hooked(model):
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
            try:
                _graphs[key] = _record(model, slots, input_size)
            except Exception:  # noqa: BLE001 - the recording is an optimisation; the model runs without it
                # Perhaps passing (memory): not remembered, the next model of it tries again.
                logger.warning("Could not record the forward of %s; it runs its Python forward.",
                               type(model).__name__, exc_info=True)
                return None
        graph = _graphs[key]
    return RecordedForward(model, graph, slots, input_size) if graph is not None else None


def _hooked(model: nn.Module) -> bool:
    """Whether calling the model runs more than its modules' ``forward``
    methods: hooks (its own or every module's), or a ``forward`` set on an instance."""
    from torch.nn.modules import module as module_state

    if any(getattr(module_state, name, None) for name in (
            "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
            "_global_backward_pre_hooks")):
        return True
    return any(module._forward_hooks or module._forward_pre_hooks or "forward" in vars(module)
               for module in model.modules())


_PLAIN = (bool, int, float, str, type(None))
# Plain attributes that say where a model came from, not what its forward does.
_PROVENANCE = frozenset({"pretrained"})


def _structure(model: nn.Module) -> tuple:
    """What the forward's Python may branch on, per module: its name, its
    class, its settings (``extra_repr``) and its plain attributes (flags
    such as ``has_shortcut``, sizes)."""
    def plain(value) -> bool:
        return isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))

    return tuple((path, type(module).__module__, type(module).__qualname__, module.extra_repr(),
                  tuple(sorted((name, value) for name, value in vars(module).items()
                               if plain(value) and name not in _PROVENANCE)))
                 for path, module in model.named_modules())


def _record(model: nn.Module, slots: list[tuple[dict, str]], input_size: torch.Size):
    """The traced forward (inputs: the image batch, then the tensors of
    ``slots``), or None when it is not exact or not self-contained (which
    would be so again: remembered); raises when tracing fails."""
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

    with torch.inference_mode():
        graph = torch.jit.trace(forward, (example, *originals), check_trace=False)
        # torch.jit.trace keeps the traced Python function on the result (for
        # torch.compile), and with it this model: the recording is for all.
        graph.__dict__.pop("_torchdynamo_inline", None)
        if not _self_contained(graph.graph):
            return None
        with torch.jit.optimized_execution(False):
            recorded, own = graph(check, *originals), model(check)
    return graph if recorded.shape == own.shape and torch.equal(recorded.isnan(), own.isnan()) \
        and torch.equal(recorded.nan_to_num(), own.nan_to_num()) else None


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
