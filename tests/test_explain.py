"""explain/: each method against an independent reference on tiny random
models (seconds, no weights needed), plus bad input, faithfulness mechanics,
pictures and the CLI."""
import csv
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import explain
import explain.cli
import models
from explain import faithfulness, pictures, sanity
from explain.rollout import rollout_tokens, tokens_to_pixels

from conftest import ROOT


def tiny_swin(seed=0):
    """3 stages (11x11 -> 6x6 -> 3x3 tokens at 44 pixels): window 4 with shifts and
    padding in stages 0 and 1, an odd side merged in stage 0 -> 1, a window
    shrunk to the map (no shift) in stage 2."""
    torch.manual_seed(seed)
    return models.create_model("swin_t", num_classes=10, embed_dim=8, depths=(2, 2, 2), num_heads=(1, 2, 2),
                               window_size=4, drop_path_rate=0.0)


def tiny_efficientnet(seed=0, prepared=False):
    torch.manual_seed(seed)
    model = models.create_model("efficientnet_lite0", num_classes=10)
    # Random BatchNorm statistics, so that folding them (prepared) is not an identity.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return models.prepare_for_inference(model) if prepared else model


def reference_gradcam(model, layer, x, target, channels_last):
    """Grad-CAM from the paper, by hand: a full backward() with hooks, channel
    weights = spatial mean of the gradient, ReLU of the weighted sum,
    bilinear upsampling, min-max normalisation."""
    saved = {}

    def forward_hook(module, inputs, output):
        saved["activation"] = output
        output.register_hook(lambda grad: saved.__setitem__("gradient", grad))

    handle = layer.register_forward_hook(forward_hook)
    x = x.clone().requires_grad_(True)  # a prepared model's weights need no gradient
    try:
        logits = model(x)
        logits[0, target].backward()
    finally:
        handle.remove()
    activation, gradient = saved["activation"].detach()[0], saved["gradient"][0]
    if channels_last:  # Swin tokens [H, W, C]
        activation, gradient = activation.permute(2, 0, 1), gradient.permute(2, 0, 1)
    channels = activation.shape[0]
    cam = torch.zeros(activation.shape[1:])
    for k in range(channels):
        cam += gradient[k].mean() * activation[k]
    cam = torch.relu(cam)
    cam = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return ((cam - cam.min()) / (cam.max() - cam.min())).numpy()


@pytest.mark.parametrize("prepared", [False, True])
def test_gradcam_efficientnet_equals_the_papers_formula(prepared):
    model = tiny_efficientnet(prepared=prepared)
    x = torch.randn(1, 3, 96, 96)
    for target in (0, 7):
        ours = explain.saliency(model, x, "gradcam", target)
        reference = reference_gradcam(model, model.head.project_conv, x, target, channels_last=False)
        assert ours.shape == (96, 96) and ours.dtype == np.float32
        assert ours.min() == 0 and ours.max() == 1
        assert np.abs(ours - reference).max() <= 1e-4


def test_gradcam_swin_equals_the_papers_formula():
    model = tiny_swin()
    x = torch.randn(1, 3, 44, 44)
    for target in (1, 4):
        ours = explain.GradCAM(model).attribute(x, target)[0].numpy()
        reference = reference_gradcam(model, model.layers[-1], x, target, channels_last=True)
        assert np.abs(ours - reference).max() <= 1e-4


def test_every_method_gives_a_normalised_map_per_image():
    swin, cnn = tiny_swin(), tiny_efficientnet(prepared=True)
    assert explain.methods_for(swin) == list(explain.METHODS)
    assert explain.methods_for(cnn) == [m for m in explain.METHODS if m not in ("rollout", "grad_rollout")]
    for model, size in ((swin, 44), (cnn, 64)):
        x = torch.randn(2, 3, size, size)
        for method in explain.methods_for(model):
            maps = explain.make(model, method).attribute(x, [3, 5])
            assert maps.shape == (2, size, size), method
            assert maps.dtype == torch.float32
            assert float(maps.min()) == 0.0 and float(maps.max()) == 1.0, method


def test_inference_mode_inputs_work():
    """The app makes its tensors under inference mode; autograd needs a copy."""
    model = tiny_efficientnet(prepared=True)
    with torch.inference_mode():
        x = torch.randn(1, 3, 64, 64)
        maps = explain.GradCAM(model).attribute(x, 2)
    assert maps.shape == (1, 64, 64)


# --------------------------------------------------------------------------- rollout
def window_slot_tokens(record):
    """For every window slot (window-major, row-major inside): the flat token
    index it holds, or None for padding. Written out from the geometry: the
    slot at (row, col) of the shifted padded map holds padded position
    ((row + shift) mod Hp, (col + shift) mod Wp)."""
    (h, w), (hp, wp) = record.feature_size, record.padded_size
    (mh, mw), (sh, sw) = record.window_size, record.shift_size
    slots = []
    for wy in range(hp // mh):
        for wx in range(wp // mw):
            for iy in range(mh):
                for ix in range(mw):
                    y, x = (wy * mh + iy + sh) % hp, (wx * mw + ix + sw) % wp
                    slots.append(y * w + x if y < h and x < w else None)
    return slots


def dense_attention(record, attention):
    """The block's full token-to-token matrix [HW, HW]: zero between tokens of
    different windows; padding keys dropped."""
    h, w = record.feature_size
    n = record.window_size[0] * record.window_size[1]
    slots = window_slot_tokens(record)
    dense = np.zeros((h * w, h * w))
    flat = attention.reshape(-1, n, n)
    for window in range(flat.shape[0]):
        for i in range(n):
            for j in range(n):
                ti, tj = slots[window * n + i], slots[window * n + j]
                if ti is not None and tj is not None:
                    dense[ti, tj] = flat[window, i, j]
    return dense


def merge_matrix(size):
    """Patch merging [ceil(H/2) ceil(W/2), H W]: each merged token the mean of its real 2 x 2 children."""
    h, w = size
    mh, mw = (h + 1) // 2, (w + 1) // 2
    merge = np.zeros((mh * mw, h * w))
    for y in range(h):
        for x in range(w):
            merge[(y // 2) * mw + x // 2, y * w + x] = 1
    return merge / merge.sum(axis=1, keepdims=True)


def reference_rollout(records, attentions, renormalise):
    product = None
    for index, (record, attention) in enumerate(zip(records, attentions)):
        dense = dense_attention(record, attention)
        block = dense + np.eye(len(dense))
        if renormalise:
            block = block / block.sum(axis=1, keepdims=True)
        if product is None:
            product = block
        else:
            if records[index - 1].stage != record.stage:
                product = merge_matrix(records[index - 1].feature_size) @ product
            product = block @ product
    final = product.shape[0]
    return (np.full(final, 1 / final) @ product).reshape(records[0].feature_size)


def captured(model, x, keep_grad=False, target=None):
    with torch.enable_grad() if keep_grad else torch.no_grad(), \
            models.capture_attention(model, keep_grad=keep_grad) as records:
        logits = model(x)
    gradients = torch.autograd.grad(logits[0, target], [r.attention for r in records]) if keep_grad else None
    return records, gradients


def test_rollout_equals_the_dense_product_of_block_matrices():
    model = tiny_swin()
    x = torch.randn(1, 3, 44, 44)
    records, _ = captured(model, x)
    geometry = [(r.stage, r.feature_size, r.padded_size, r.shift_size) for r in records]
    # The case is the one described: shifts, padding, an odd merge, a window shrunk to the map.
    assert geometry[1] == (0, (11, 11), (12, 12), (2, 2)) and geometry[3] == (1, (6, 6), (8, 8), (2, 2))
    assert geometry[5] == (2, (3, 3), (3, 3), (0, 0))
    head_means = [r.attention.mean(dim=2)[0] for r in records]
    ours = rollout_tokens(records, [a.unsqueeze(0) for a in head_means])[0].double().numpy()
    reference = reference_rollout(records, [a.double().numpy() for a in head_means], renormalise=True)
    assert abs(reference.sum() - 1) < 1e-9  # each block's matrix is row-stochastic
    assert np.abs(ours - reference).max() <= 1e-5 * reference.max()
    # The method: those token values on their 4 x 4 patches, normalised.
    pixels = tokens_to_pixels(torch.from_numpy(reference)[None], 4, (44, 44))
    expected = explain.normalise(pixels)[0].numpy()
    assert np.abs(explain.Rollout(model).attribute(x, 0)[0].numpy() - expected).max() <= 1e-5


def test_grad_rollout_equals_the_dense_product_of_gradient_weighted_blocks():
    model = tiny_swin(seed=1)
    x = torch.randn(1, 3, 44, 44)
    target = 6
    records, gradients = captured(model, x, keep_grad=True, target=target)
    weighted = [(g * r.attention).clamp_min(0).mean(dim=2)[0].detach() for r, g in zip(records, gradients)]
    reference = reference_rollout(records, [a.double().numpy() for a in weighted], renormalise=False)
    ours = rollout_tokens(records, [a.unsqueeze(0) for a in weighted], renormalise=False)[0].double().numpy()
    assert np.abs(ours - reference).max() <= 1e-5 * reference.max()
    pixels = tokens_to_pixels(torch.from_numpy(reference)[None], 4, (44, 44))
    expected = explain.normalise(pixels)[0].numpy()
    assert np.abs(explain.GradRollout(model).attribute(x, target)[0].numpy() - expected).max() <= 1e-5


def test_capture_keeps_its_default_detached():
    model = tiny_swin()
    with torch.enable_grad(), models.capture_attention(model) as records:
        model(torch.randn(1, 3, 44, 44))
    assert not any(r.attention.requires_grad for r in records)


# --------------------------------------------------------------------------- bad input
def one_sentence(message: str) -> bool:
    return message.endswith(".") and ". " not in message.rstrip(".") and "\n" not in message


@pytest.mark.parametrize("method, target, fragment", [
    ("lime", 0, "Unknown method 'lime'"),
    ("gradcam", "not a class", "is not a class of this model"),
    ("gradcam", 10, "out of range"),
    ("rollout", 0, "needs a Swin Transformer"),
    ("grad_rollout", 0, "needs a Swin Transformer"),
])
def test_bad_input_is_one_sentence(method, target, fragment):
    model = tiny_efficientnet()
    with pytest.raises(ValueError) as caught:
        explain.saliency(model, torch.randn(1, 3, 64, 64), method, target)
    assert fragment in str(caught.value)
    assert one_sentence(str(caught.value)), str(caught.value)


def test_targets_by_name_index_and_top1():
    model = tiny_efficientnet(prepared=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        top = int(model(x).argmax())
    by_index = explain.saliency(model, x, "gradcam", top)
    assert np.array_equal(explain.saliency(model, x, "gradcam", "top1"), by_index)
    assert np.array_equal(explain.saliency(model, x, "gradcam", f"class {top}"), by_index)
    assert np.array_equal(explain.saliency(model, x, "gradcam", str(top)), by_index)


# --------------------------------------------------------------------------- faithfulness
def test_deletion_insertion_curves_share_their_ends_and_order_pixels_by_the_map():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    saliency = np.zeros((32, 32), np.float32)
    saliency[:8] = 1.0  # the top quarter first
    baseline = faithfulness.blurred_baseline(x)
    deletion, insertion = faithfulness.curve_inputs(x, baseline, saliency, steps=16)
    assert deletion.shape == insertion.shape == (15, 3, 32, 32)
    # After 4/16 of the pixels, exactly the top quarter is removed / revealed.
    assert torch.equal(deletion[3, :, :8], baseline[0, :, :8]) and torch.equal(deletion[3, :, 8:], x[0, :, 8:])
    assert torch.equal(insertion[3, :, :8], x[0, :, :8]) and torch.equal(insertion[3, :, 8:], baseline[0, :, 8:])

    model = tiny_efficientnet(prepared=True)
    result = faithfulness.evaluate(model, x, saliency, target=3, steps=16)
    for curves in (result.curves, result.random):
        assert len(curves.fractions) == len(curves.deletion) == len(curves.insertion) == 17
        assert curves.deletion[0] == curves.insertion[-1] == pytest.approx(result.probability)
        assert curves.deletion[-1] == curves.insertion[0]
    alone = faithfulness.deletion_insertion(model, x, saliency, 3, steps=16)
    assert np.allclose(alone.deletion, result.curves.deletion, atol=1e-6)
    assert np.allclose(alone.insertion, result.curves.insertion, atol=1e-6)
    assert set(result.scores()) == {"deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"}


def test_the_blurred_baseline_is_torchvisions_gaussian_blur():
    """Two 1-D passes, the same numbers as torchvision's 2-D kernel (sigma a
    fortieth of the shorter side, at least 1; reflected edges)."""
    from torchvision.transforms.v2 import functional as TF

    torch.manual_seed(0)
    for shape in [(1, 3, 224, 224), (2, 3, 16, 16), (1, 3, 32, 48), (1, 1, 384, 300)]:
        x = torch.randn(shape)
        sigma = max(min(shape[-2:]) / 40, 1.0)
        size = 2 * int(round(2 * sigma)) + 1
        reference = TF.gaussian_blur(x, kernel_size=[size, size], sigma=[sigma, sigma])
        assert torch.allclose(faithfulness.blurred_baseline(x), reference, atol=1e-6, rtol=0)


def test_auc_and_random_map():
    assert faithfulness.auc(np.linspace(0, 1, 17), np.ones(17)) == pytest.approx(1.0)
    assert faithfulness.auc(np.linspace(0, 1, 17), np.linspace(0, 1, 17)) == pytest.approx(0.5)
    a, b = faithfulness.random_map((224, 224), seed=0), faithfulness.random_map((224, 224), seed=0)
    assert np.array_equal(a, b) and a.shape == (224, 224) and 0 <= a.min() and a.max() <= 1
    assert not np.array_equal(a, faithfulness.random_map((224, 224), seed=1))


def test_tied_pixels_go_in_a_seeded_random_order_and_the_random_map_is_seeded_per_image():
    flat = np.zeros((16, 16), np.float32)
    order = faithfulness._order(flat, seed=1)
    assert torch.equal(order, faithfulness._order(flat, seed=1))
    assert sorted(order.tolist()) == list(range(256))
    first_quarter = order[:64]
    assert not torch.equal(first_quarter.sort().values, torch.arange(64))  # not the top rows, row-major
    peaked = flat.copy()
    peaked[5, 7] = 1.0
    assert int(faithfulness._order(peaked, seed=1)[0]) == 5 * 16 + 7  # the map still comes first
    torch.manual_seed(0)
    a, b = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    assert faithfulness.image_seed(a) == faithfulness.image_seed(a.clone())
    assert faithfulness.image_seed(a) != faithfulness.image_seed(b)


def test_random_curves_given_leave_the_scores_unchanged():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    saliency = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    model = tiny_efficientnet(prepared=True)
    full = faithfulness.evaluate(model, x, saliency, target=3, steps=8)
    random = faithfulness.random_curves(model, x, 3, steps=8)
    reused = faithfulness.evaluate(model, x, saliency, target=3, steps=8, random=random)
    for key, value in full.scores().items():
        assert reused.scores()[key] == pytest.approx(value, abs=1e-5), key


def test_smoothgrad_is_seeded_and_leaves_the_global_random_state_alone():
    model = tiny_efficientnet(prepared=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    one = explain.make(model, "smoothgrad", samples=4, batch_size=2).attribute(x, 1)
    assert torch.equal(torch.random.get_rng_state(), state)  # not drawn from, not rewound
    two = explain.make(model, "smoothgrad", samples=4, batch_size=2).attribute(x, 1)
    other = explain.make(model, "smoothgrad", samples=4, batch_size=2, seed=1).attribute(x, 1)
    assert torch.equal(one, two) and not torch.equal(one, other)


def test_spearman():
    a = np.arange(100, dtype=float)
    assert sanity.spearman(a, a ** 3) == pytest.approx(1.0)
    assert sanity.spearman(a, -a) == pytest.approx(-1.0)
    assert sanity.spearman(a, np.zeros(100)) == 0.0
    ties = np.array([0, 0, 1, 1.0])
    assert np.array_equal(sanity.rank(ties), [1.5, 1.5, 3.5, 3.5])


def test_randomise_top_down_leaves_the_original_alone():
    model = tiny_efficientnet(prepared=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    top = sanity.randomise(model, count=1)
    changed = [k for k, v in top.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith("head.classifier") for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------- pictures, CLI
def test_overlay_and_colormap():
    lut = pictures.LUT
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert tuple(lut[0]) == (0, 0, 4) and tuple(lut[-1]) == (252, 255, 164)
    image = np.full((4, 5, 3), 100, np.uint8)
    saliency = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    assert np.array_equal(pictures.overlay(image, saliency, 0.0), image)
    assert np.array_equal(pictures.overlay(image, saliency, 1.0), pictures.colorize(saliency))
    with pytest.raises(ValueError, match="draw the map over the model input"):
        pictures.overlay(image, np.zeros((3, 3)), 0.5)


def test_cli_writes_overlays_maps_and_scores(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(ROOT / "assets" / "examples" / "cat.jpg", folder)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert explain.cli.main([str(folder), "--method", "gradcam", "--target", "tiger cat", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert [row["class"] for row in rows] == ["tiger cat"]
    assert set(rows[0]) == set(explain.cli.COLUMNS)
    saliency = np.load(out / "cat.gradcam.npy")
    assert saliency.shape == (224, 224) and saliency.dtype == np.float32
    assert (out / "cat.gradcam.png").is_file()
    assert explain.cli.main([str(folder), "--method", "rollout", "--out", str(out)]) == 2


def test_the_app_reuses_the_random_maps_curves_for_a_second_method(monkeypatch):
    from demo import explaining

    cache = explaining.RandomCurvesCache(size=2)
    monkeypatch.setattr(explaining, "RANDOM_CURVES", cache)
    calls = []
    real = faithfulness.deletion_insertion
    monkeypatch.setattr(faithfulness, "deletion_insertion", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = tiny_efficientnet(prepared=True)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first = explaining.faithfulness_scores("tiny", False, model, x, np.eye(32, dtype=np.float32), 3, 8)
    assert len(cache) == 1 and not calls  # the first request: both curves in one pass
    second = explaining.faithfulness_scores("tiny", False, model, x, np.ones((32, 32), np.float32), 3, 8)
    assert second.random is first.random and len(calls) == 1  # only the map's own curves
    other = tiny_efficientnet(seed=1, prepared=True)  # another model object: a miss
    explaining.faithfulness_scores("tiny", False, other, x, np.eye(32, dtype=np.float32), 3, 8)
    explaining.faithfulness_scores("tiny", False, model, x * 2, np.eye(32, dtype=np.float32), 3, 8)
    assert len(cache) == 2  # bounded
