"""models.record_forward: an EfficientNet's forward recorded once per
architecture and input size, with the weights as inputs, run without Python
between its operations; and the app's classification using it."""
import gc
import threading
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

import models
from models import recording
from demo import service as service_module
from demo.service import InferenceService, Settings, load_for_inference, softmax_forward


@pytest.fixture(autouse=True)
def fresh_recordings(monkeypatch):
    """Each test starts with no recording made (they are kept per process)."""
    monkeypatch.setattr(recording, "_graphs", {})


def prepared(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.prepare_for_inference(models.create_model(name))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "tf_efficientnetv2_s"])
def test_the_recording_gives_the_python_forwards_results_bit_for_bit(name):
    model = prepared(name, 0)
    recorded = models.record_forward(model)
    assert recorded is not None and recorded.input_size == torch.Size(model.spec.input_size)
    for batch in (1, 3) if name == "efficientnet_lite0" else (2,):
        x = torch.randn(batch, *model.spec.input_size)
        with torch.inference_mode():
            through_recording, plain = recorded(x), model(x)
        assert through_recording.shape == (batch, model.spec.num_classes) and through_recording.std() > 0
        assert torch.equal(through_recording, plain)


def test_models_of_one_architecture_share_a_recording_and_each_gets_its_own_results():
    first, second = prepared("efficientnet_lite0", 1), prepared("efficientnet_lite0", 2)
    one, two = models.record_forward(first), models.record_forward(second)
    assert one._graph is two._graph  # one graph: a model loaded again adds nothing to TorchScript's registry
    x = torch.randn(2, *first.spec.input_size)
    with torch.inference_mode():
        assert torch.equal(one(x), first(x)) and torch.equal(two(x), second(x))
        assert not torch.allclose(one(x), two(x), rtol=1e-3, atol=0)  # the weights are inputs, not baked in
        # Weights replaced after recording: the recording reads the ones the model has now.
        conv = second.stem.conv
        conv.weight = torch.nn.Parameter(conv.weight * 2, requires_grad=False)
        assert torch.equal(two(x), second(x)) and not torch.allclose(two(x), 2 * one(x), rtol=1e-3, atol=0)


def test_the_recording_holds_no_model_and_no_weights():
    model = prepared("efficientnet_lite0", 3)
    recorded = models.record_forward(model)
    graph = recorded._graph
    assert list(recording._graphs.values()) == [graph]  # recorded here, from this model
    baked = [node for node in graph.graph.nodes() if node.kind() == "prim::Constant" and node.hasAttribute("value")
             and node.kindOf("value") == "t" and node.t("value").numel() > 1]
    assert baked == [] and len(list(graph.graph.inputs())) == 1 + len(list(model.parameters())) \
        + len(list(model.buffers()))
    alive = weakref.ref(model)
    del model, recorded
    gc.collect()
    assert alive() is None  # neither the shared graph nor TorchScript's registry keeps it


def test_runs_from_two_threads_at_once_give_each_its_own_results():
    model = prepared("efficientnet_lite0", 4)
    recorded = models.record_forward(model)
    inputs = [torch.randn(batch, *model.spec.input_size) for batch in (1, 2, 3, 4)]
    with torch.inference_mode():
        expected = [model(x) for x in inputs]
    results = {}

    def run(i):
        with torch.inference_mode():
            for _ in range(3):
                results.setdefault(i, []).append(recorded(inputs[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(torch.equal(out, expected[i]) for i, outs in results.items() for out in outs)
    assert sum(len(outs) for outs in results.values()) == 12


def test_what_a_recording_cannot_answer_for_is_refused():
    model = prepared("efficientnet_lite0", 5)
    recorded = models.record_forward(model)
    _, h, w = model.spec.input_size
    with torch.no_grad():
        assert recorded.accepts(torch.zeros(1, 3, h, w))
        assert not recorded.accepts(torch.zeros(1, 3, h + 32, w))  # another input size: recorded for one
        assert not recorded.accepts(torch.zeros(3, h, w))  # no batch dimension
        assert not recorded.accepts(torch.zeros(1, 3, h, w, dtype=torch.float64))
        with pytest.raises(ValueError, match=r"float32 CPU inputs \[B, 3, 224, 224\]"):
            recorded(torch.zeros(1, 3, h + 32, w))
    assert not recorded.accepts(torch.zeros(1, 3, h, w))  # gradients on: the model's own forward
    with torch.no_grad(), torch.autocast("cpu"):
        assert not recorded.accepts(torch.zeros(1, 3, h, w))  # autocast: the model's own forward
    # Models that do not declare a forward a recording can stand for, in training mode, in float64, with
    # hooks, or with a forward of their own get none.
    assert models.record_forward(models.create_model("swin_cifar").eval()) is None
    assert models.record_forward(models.create_model("efficientnet_lite0").train()) is None
    assert models.record_forward(models.create_model("efficientnet_lite0").double().eval()) is None
    hooked = prepared("efficientnet_lite0", 6)
    hook = hooked.head.register_forward_hook(lambda module, inputs, output: output * 0)
    assert models.record_forward(hooked) is None
    hook.remove()
    overridden = prepared("efficientnet_lite0", 7)
    overridden.forward = lambda x: torch.zeros(x.shape[0], 1000)
    assert models.record_forward(overridden) is None
    assert len(recording._graphs) == 1  # only the first model was recorded
    # A model switched to training mode after recording, or gone: the recording answers no more.
    unprepared = models.create_model("efficientnet_lite0").eval()
    for_unprepared = models.record_forward(unprepared)
    unprepared.train()
    with torch.no_grad():
        assert not for_unprepared.accepts(torch.zeros(1, 3, h, w))
        del model, unprepared
        gc.collect()
        assert not recorded.accepts(torch.zeros(1, 3, h, w))


def test_models_that_differ_only_in_python_get_their_own_recordings():
    """The key holds what the forward's Python branches on: a prepared and an
    unprepared Lite0 (BatchNorms folded, channels-last) get a recording each."""
    model, unprepared = prepared("efficientnet_lite0", 8), models.create_model("efficientnet_lite0").eval()
    mine, theirs = models.record_forward(model), models.record_forward(unprepared)
    assert mine._graph is not theirs._graph and len(recording._graphs) == 2
    x = torch.randn(2, *model.spec.input_size)
    with torch.inference_mode():
        assert torch.equal(mine(x), model(x)) and torch.equal(theirs(x), unprepared(x))
    # Where the weights came from is no part of it.
    other = prepared("efficientnet_lite0", 9)
    other.pretrained = not model.pretrained
    assert models.record_forward(other)._graph is mine._graph


class TwoLayers(torch.nn.Module):
    recordable = True

    def __init__(self, tied: bool):
        super().__init__()
        self.first, self.second = torch.nn.Linear(6, 6), torch.nn.Linear(6, 6)
        if tied:
            self.second.weight = self.first.weight

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def test_tied_weights_are_separate_inputs_so_an_untied_model_can_share_the_recording():
    torch.manual_seed(0)
    tied, untied = TwoLayers(tied=True).eval(), TwoLayers(tied=False).eval()
    for_tied, for_untied = models.record_forward(tied, (6,)), models.record_forward(untied, (6,))
    assert for_tied._graph is for_untied._graph
    x = torch.randn(4, 6)
    with torch.inference_mode():
        assert torch.equal(for_tied(x), tied(x)) and torch.equal(for_untied(x), untied(x))
        assert not torch.allclose(for_untied(x), for_tied(x))


def test_a_recording_that_would_differ_from_the_python_forward_is_not_used(monkeypatch):
    """A forward whose Python decides something per call cannot be recorded
    faithfully: the check on another batch catches it, and the refusal is
    remembered (no second recording, nothing more kept)."""
    class CountsItsCalls(torch.nn.Module):
        recordable = True  # wrongly: its result depends on a Python counter

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 2)
            self.calls = [0]

        def forward(self, x):
            self.calls[0] += 1
            return self.linear(x) * self.calls[0]

    real_trace, traced = torch.jit.trace, []

    def counting_trace(*args, **kwargs):
        traced.append(1)
        return real_trace(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "trace", counting_trace)
    model = CountsItsCalls().eval()
    before = len(recording._graphs)
    assert models.record_forward(model, (4,)) is None
    assert models.record_forward(model, (4,)) is None
    assert len(recording._graphs) == before + 1 and len(traced) == 1


def test_the_app_classifies_through_the_recording_with_the_same_probabilities(monkeypatch):
    model = load_for_inference("efficientnet_lite0", pretrained=True)
    recorded = service_module._recorded_forwards.get(model)
    assert recorded is not None
    calls = []
    monkeypatch.setattr(recorded, "_graph", _counting(recorded._graph, calls))
    images = [torch.randn(3, 224, 224) for _ in range(3)]
    through_recording = softmax_forward([(model, image) for image in images])
    assert len(calls) == 1 and calls[0] == 3  # one recorded forward for the batch
    with torch.inference_mode():
        plain = model(torch.stack(images)).softmax(dim=-1)
    assert all(torch.equal(row, plain[i]) for i, row in enumerate(through_recording))
    # Swin: no recording, its Python forward.
    swin = load_for_inference("swin_cifar")
    assert service_module._recorded_forwards.get(swin) is None
    assert softmax_forward([(swin, torch.randn(3, 32, 32))])[0].shape == (10,)


def _counting(graph, calls):
    def run(x, *tensors):
        calls.append(x.shape[0])
        return graph(x, *tensors)
    return run


def test_the_service_answers_the_example_photo_as_before():
    """End to end through InferenceService: the bundled Lite0 on a photo, the
    recording against the model's own forward."""
    service = InferenceService(Settings(model_cache_mb=100, attention_cache_mb=16, download_retry_s=0))
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((300, 400, 3)) * 255).astype(np.uint8))
    result = service.classify(image, "efficientnet_lite0", top_k=3)
    model = service.models.get("efficientnet_lite0", True)
    assert service_module._recorded_forwards.get(model) is not None
    x = models.create_transform(model.spec)(image).unsqueeze(0)
    with torch.inference_mode():
        probabilities = model(x).softmax(dim=-1)[0]
    values, indices = probabilities.topk(3)
    assert list(result.probabilities) == [model.spec.labels[i] for i in indices.tolist()]
    assert list(result.probabilities.values()) == values.tolist()
