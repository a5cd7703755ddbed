"""With the same weights our models give timm's logits (max |difference| <=
1e-4, fp32; prepared for inference as the app runs them, the EfficientNets
are held to the exact float64 logits instead), loading through the real Hub download path: timm's model with
random weights is written as a Hub checkpoint (``model.safetensors`` +
``config.json``, as timm writes them), served by the loopback fake Hub, and
loaded with ``create_model(name, pretrained=True)``."""
import gc

import pytest
import timm
import torch
from timm.models import save_for_hf
from timm.utils import AttentionExtract

import models
from benchmarks.timm_reference import calibrate_batchnorm

TOLERANCE = 1e-4

# name -> a non-square size at which timm and we must agree. For Swin, every
# stage's map must be a multiple of the window and larger than it both ways
# (timm pads after the cyclic shift, the seed before it; with no padding the
# two are the same computation).
NON_SQUARE = {
    "swin_tiny_patch4_window7_224": (448, 672),
    "swin_small_patch4_window7_224": (448, 672),
    "swin_base_patch4_window7_224": (448, 672),
    "swin_large_patch4_window7_224": (448, 672),
    "swin_base_patch4_window12_384": (768, 1152),
    "swin_large_patch4_window12_384": (768, 1152),
    "tf_efficientnetv2_s": (256, 320),
    "tf_efficientnetv2_m": (225, 301),
    "tf_efficientnetv2_l": (257, 199),
}
HUB_MODELS = [n for n in models.list_models() if models.get_spec(n).hf_hub_id]
# One full-size model per family runs by default; the others only in
# `make test-all` (marker `slow`): the code paths are the same, the sizes
# are what takes minutes. The small configurations below cover the paths.
DEFAULT_FULL_SIZE = {"swin_tiny_patch4_window7_224", "tf_efficientnetv2_s"}
HUB_PARAMS = [pytest.param(n, marks=() if n in DEFAULT_FULL_SIZE else pytest.mark.slow) for n in HUB_MODELS]


def test_every_hub_architecture_is_compared():
    assert sorted(HUB_MODELS) == sorted(NON_SQUARE)


def randomize(model: torch.nn.Module) -> None:
    """Make every tensor of the checkpoint informative: a wrong permutation,
    a swapped norm or a misread BatchNorm statistic must change the logits."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("relative_position_bias_table"):
                t.copy_(torch.randn(t.shape, generator=g))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", ".bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.ndim == 1:  # norm scales
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        # A random deep residual network blows up (EfficientNetV2-M's logits
        # reach 1e6 with timm's init); damping each residual branch's last
        # BatchNorm keeps activations of order one, as training does.
        last_norm = {}
        for name, _ in model.named_parameters():
            parts = name.split(".")
            if parts[0] == "blocks" and parts[3].startswith("bn") and parts[-1] == "weight":
                block = ".".join(parts[:3])
                last_norm[block] = max(last_norm.get(block, ""), parts[3])
        params = dict(model.named_parameters())
        for block, norm in last_norm.items():
            params[f"{block}.{norm}.weight"].mul_(0.2)
    calibrate_batchnorm(model, g, 320)


def publish(hub, name, tmp_path):
    """timm's random model, written as timm writes a Hub checkpoint and served by the fake Hub."""
    spec = models.get_spec(name)
    reference = timm.create_model(name, pretrained=False).eval()
    randomize(reference)
    folder = tmp_path / name
    save_for_hf(reference, folder, safe_serialization=True)
    hub.add_folder(spec.hf_hub_id, folder)
    return reference


def reference_at(name, reference, size):
    """timm builds Swin for a fixed input size; a model for another size with the same weights."""
    if not models.get_spec(name).is_swin:
        return reference
    other = timm.create_model(name, pretrained=False, img_size=size).eval()
    other.load_state_dict(reference.state_dict())
    return other


@pytest.mark.parametrize("name", HUB_PARAMS)
def test_hub_checkpoint_gives_timms_logits(fake_hub, tmp_path, name):
    reference = publish(fake_hub, name, tmp_path)
    model = models.create_model(name, pretrained=True)
    assert model.pretrained and model.spec.input_size == models.get_spec(name).input_size
    _, h, w = model.spec.input_size
    torch.manual_seed(1)
    inputs = [torch.randn(batch, 3, *size) for size, batch in (((h, w), 2), (NON_SQUARE[name], 1))]
    expected = []
    for x in inputs:
        with torch.inference_mode():
            expected.append(reference_at(name, reference, x.shape[-2:])(x))
            actual = model(x)
        difference = (expected[-1] - actual).abs().max().item()
        assert difference <= TOLERANCE, f"{name} at {tuple(x.shape)}: max |difference| {difference:.2e}"
        assert expected[-1].std() > 0.1  # the comparison is not between two flat outputs
    # As the app runs it: the EfficientNets fold BatchNorm and run channels-last.
    prepared = models.prepare_for_inference(model)
    if model.spec.is_swin:
        assert prepared is model and model.training is False  # nothing to prepare
    else:
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
        exact = reference.double()  # float64: the logits fp32 rounds
        for x, logits in zip(inputs, expected):
            with torch.inference_mode():
                truth = exact(x.double())
                ours = (prepared(x).double() - truth).abs().max().item()
            timms = (logits.double() - truth).abs().max().item()
            # The same sums in another order round differently: as close to the
            # exact logits as timm's own fp32 forward is (a deep one is off by
            # up to ~3e-4 here), give or take a factor of 3.
            assert ours <= max(TOLERANCE, 3 * timms), (
                f"{name} prepared, at {tuple(x.shape)}: {ours:.2e} from the float64 logits (timm's fp32: {timms:.2e})")
    del model, prepared, reference
    gc.collect()


def test_capture_attention_equals_timms_attention(fake_hub, tmp_path):
    name = "swin_tiny_patch4_window7_224"
    reference = publish(fake_hub, name, tmp_path)
    model = models.create_model(name, pretrained=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        expected = AttentionExtract(reference, method="hook")(x)  # name -> [B * nW, heads, N, N]
        with models.capture_attention(model) as records:
            model(x)
    assert len(records) == len(expected) == 12
    for record, (key, theirs) in zip(records, expected.items()):
        assert key == f"layers.{record.stage}.blocks.{record.block}.attn.attn_drop"
        ours = record.attention.reshape(theirs.shape)
        assert (ours - theirs).abs().max().item() <= 1e-5, key


def test_our_lite0_architecture_is_timms_tf_efficientnet_lite0():
    """The bundled Lite0 weights have no Hub twin; the architecture is checked
    against timm's TensorFlow-port Lite0 with random weights instead."""
    reference = timm.create_model("tf_efficientnet_lite0").eval()
    randomize(reference)
    model = models.create_model("efficientnet_lite0")
    models.load_timm_state_dict(model, reference.state_dict(), "timm tf_efficientnet_lite0")
    inputs = [torch.randn(2, 3, *size) for size in ((224, 224), (241, 187))]
    with torch.inference_mode():
        expected = [reference(x) for x in inputs]
        for x, logits in zip(inputs, expected):
            assert (logits - model(x)).abs().max().item() <= TOLERANCE
        models.prepare_for_inference(model)  # as the app runs it
        for x, logits in zip(inputs, expected):
            assert (logits - model(x)).abs().max().item() <= TOLERANCE


# Small Swins with random weights: every path of the full-size ones (plain and
# shifted blocks, patch merging, several heads, non-square inputs) in a fraction of the time. Every map is a
# multiple of its window: timm pads after the cyclic shift, the seed (and we)
# before it, so with padding the two differ by design (tests/test_views.py
# checks our padding against hand-computed positions).
SMALL_SWINS = [
    ("two stages, window 7", dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=7), (56, 112)),
    ("three stages, window 4", dict(embed_dim=24, depths=(2, 2, 2), num_heads=(1, 2, 3), window_size=4), (64, 128)),
]


@pytest.mark.parametrize("config, size", [c[1:] for c in SMALL_SWINS], ids=[c[0] for c in SMALL_SWINS])
def test_small_swins_give_timms_logits(config, size):
    reference = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=size, num_classes=10,
                                  **config).eval()
    randomize(reference)
    model = models.create_model("swin_tiny_patch4_window7_224", num_classes=10, **config)
    models.load_timm_state_dict(model, reference.state_dict(), "timm, small configuration")
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, actual = reference(x), model(x)
        with models.capture_attention(model) as records:
            captured = model(x)
    assert expected.std() > 0.05  # not two flat outputs
    assert (expected - actual).abs().max().item() <= TOLERANCE
    assert (captured - actual).abs().max().item() <= TOLERANCE
    assert any(any(r.shift_size) for r in records)
