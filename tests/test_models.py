"""The model package without the network: the registry, the bundled
EfficientNet-Lite0 on real photos, attention capture, padding, strict loading."""
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image

import models
from models.hub import load_state_dict_strict

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat
ESPRESSO = 967

EXPECTED = [
    "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_base_patch4_window7_224",
    "swin_base_patch4_window12_384", "swin_large_patch4_window7_224", "swin_large_patch4_window12_384",
    "swin_cifar", "tf_efficientnetv2_s", "tf_efficientnetv2_m", "tf_efficientnetv2_l", "efficientnet_lite0",
]


def test_list_models_offers_every_architecture():
    # then the models that ship trained in assets/models (tests/test_training.py checks swin_digits)
    assert models.list_models() == EXPECTED + ["swin_digits"]


@pytest.mark.parametrize("name", EXPECTED)
def test_spec_has_the_public_fields(name):
    spec = models.get_spec(name)
    assert spec.name == name
    assert len(spec.input_size) == 3 and spec.input_size[0] == 3
    assert len(spec.mean) == 3 and len(spec.std) == 3
    assert spec.interpolation == "bicubic" and 0 < spec.crop_pct <= 1
    assert len(spec.labels) == spec.num_classes
    if name in ("swin_cifar", "efficientnet_lite0"):
        assert spec.hf_hub_id is None
    else:
        assert spec.hf_hub_id.startswith(f"timm/{name}.")


def test_aliases_and_unknown_names():
    assert models.get_spec("swin_t").name == "swin_tiny_patch4_window7_224"
    assert models.get_spec("swin_b_384").input_size == (3, 384, 384)
    with pytest.raises(ValueError, match="Unknown model 'resnet50'; choose one of"):
        models.get_spec("resnet50")


def test_labels_are_imagenet_names():
    labels = models.get_spec("efficientnet_lite0").labels
    assert labels[281] == "tabby" and labels[ESPRESSO] == "espresso" and len(set(labels)) >= 998


@pytest.fixture(scope="module")
def lite0():
    return models.create_model("efficientnet_lite0", pretrained=True)


def classify(model, path):
    x = models.create_transform(model.spec)(Image.open(path).convert("RGB")).unsqueeze(0)
    with torch.inference_mode():
        return model(x).softmax(-1)[0]


def test_offline_default_puts_the_cat_in_the_cat_classes(lite0):
    probs = classify(lite0, EXAMPLES / "cat.jpg")
    top3 = probs.topk(3).indices.tolist()
    assert set(top3) <= CAT_CLASSES, [lite0.spec.labels[i] for i in top3]
    assert probs[list(CAT_CLASSES)].sum() > 0.8


def test_offline_default_recognises_espresso(lite0):
    probs = classify(lite0, EXAMPLES / "espresso.jpg")
    assert probs.argmax().item() == ESPRESSO and probs[ESPRESSO] > 0.5


def test_bundled_weights_need_no_network(monkeypatch, lite0):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the bundled model must not touch the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    model = models.create_model("lite0", pretrained=True)
    assert models.weights_status("efficientnet_lite0") == "bundled"
    for a, b in zip(model.state_dict().values(), lite0.state_dict().values()):
        assert torch.equal(a, b)


def test_untrained_architecture_has_no_weights():
    assert models.weights_status("swin_cifar") == "untrained"
    with pytest.raises(models.WeightsUnavailableError, match="no pretrained weights"):
        models.create_model("swin_cifar", pretrained=True)


def test_swin_cifar_is_the_seed_variant():
    model = models.create_model("swin_cifar")
    assert model.patch_size == 2 and model.depths == (2, 6, 2) and model.num_heads == (3, 6, 12)
    assert model.layers[0].blocks[0].mlp.fc1.out_features == 192  # MLP ratio 1
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.spec.labels[3] == "cat"


@pytest.fixture(scope="module")
def swin_t():
    torch.manual_seed(0)
    return models.create_model("swin_t")


@pytest.mark.parametrize("size", [(250, 333), (97, 61), (32, 32)])
def test_sizes_that_need_padding_run(swin_t, size):
    with torch.inference_mode():
        logits = swin_t(torch.randn(1, 3, *size))
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_capture_records_every_block_with_its_geometry(swin_t):
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        plain = swin_t(x)
        with models.capture_attention(swin_t) as records:
            captured = swin_t(x)
        after = swin_t(x)
    assert torch.allclose(plain, captured, atol=1e-5) and torch.equal(plain, after)
    assert [(r.stage, r.block) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)] + [(2, i) for i in range(6)] + [
        (3, 0), (3, 1)]
    first, shifted, last = records[0], records[1], records[-1]
    assert first.feature_size == (56, 56) and first.shift_size == (0, 0) and first.token_size == 4
    assert shifted.shift_size == (3, 3) and shifted.attention.shape == (2, 64, 3, 49, 49)
    assert last.feature_size == (7, 7) and last.shift_size == (0, 0)  # fits in one window: no shift
    assert last.token_size == 32 and last.num_heads == 24
    for r in records:
        assert torch.allclose(r.attention.sum(-1), torch.ones(()), atol=1e-5)


def test_capture_respects_the_mask_on_a_padded_map(swin_t):
    with torch.inference_mode(), models.capture_attention(swin_t) as records:
        swin_t(torch.randn(1, 3, 250, 333))
    record = records[1]  # stage 0, shifted; 63 x 84 tokens -> padded to 63 x 84
    assert record.feature_size == (63, 84) and record.padded_size == (63, 84)
    record = records[3]  # stage 1: 32 x 42 -> padded 35 x 42
    assert record.feature_size == (32, 42) and record.padded_size == (35, 42) and record.shift_size == (3, 3)
    allowed = models.swin.shifted_window_mask(record.padded_size, record.window_size, record.shift_size)
    attention = record.attention[0]  # [nW, heads, N, N]
    assert attention.masked_select(~allowed.unsqueeze(1)).max() < 1e-30
    assert (~allowed).any()


def test_capture_sees_only_its_own_thread(swin_t):
    started, done = threading.Event(), threading.Event()
    other_records = []

    def other_request():
        started.wait()
        with torch.inference_mode():
            swin_t(torch.randn(1, 3, 64, 64))
        other_records.append(True)
        done.set()

    thread = threading.Thread(target=other_request)
    thread.start()
    with torch.inference_mode(), models.capture_attention(swin_t) as records:
        started.set()
        done.wait(30)
        swin_t(torch.randn(1, 3, 224, 224))
    thread.join()
    assert other_records and len(records) == 12
    assert all(r.feature_size[0] in (56, 28, 14, 7) for r in records)


def test_capture_refuses_a_model_without_swin_blocks(lite0):
    with pytest.raises(TypeError, match="no Swin blocks"):
        with models.capture_attention(lite0):
            pass


def test_strict_loading_names_missing_unexpected_and_misshapen_keys(swin_t):
    state = dict(swin_t.state_dict())
    state.pop("norm.weight")
    state["extra.weight"] = torch.zeros(1)
    state["head.bias"] = torch.zeros(10)
    model = models.create_model("swin_t")
    with pytest.raises(models.CheckpointMismatchError) as error:
        load_state_dict_strict(model, state, "test.safetensors")
    message = str(error.value)
    assert "missing keys: norm.weight" in message and "unexpected keys: extra.weight" in message
    assert "head.bias (checkpoint [10], model [1000])" in message and "test.safetensors" in message


def test_strict_loading_refuses_non_finite_weights(swin_t):
    state = dict(swin_t.state_dict())
    state["norm.weight"] = torch.full_like(state["norm.weight"], float("nan"))
    with pytest.raises(models.CheckpointMismatchError, match="non-finite values in norm.weight"):
        load_state_dict_strict(models.create_model("swin_t"), state, "x")


def test_relative_position_bias_map_is_the_table_by_offset(swin_t):
    attn = swin_t.layers[0].blocks[0].attn
    bias_map = attn.relative_position_bias_map()
    assert bias_map.shape == (3, 13, 13)
    # Offset (dy, dx) = (-6, -6) is table row 0; (0, 0) the centre row 6 * 13 + 6.
    assert torch.equal(bias_map[:, 0, 0], attn.relative_position_bias_table[0].detach())
    assert torch.equal(bias_map[:, 6, 6], attn.relative_position_bias_table[6 * 13 + 6].detach())


def test_training_path_matches_inference_and_has_gradients(swin_t):
    """The fused inference kernels and the plain modules training uses compute the same function."""
    model = models.create_model("swin_t", drop_path_rate=0.0)
    model.load_state_dict(swin_t.state_dict())
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        fused = model(x)
    model.train()
    plain = model(x)
    plain.sum().backward()
    assert (plain.detach() - fused).abs().max() < 1e-4
    assert model.layers[0].blocks[1].attn.relative_position_bias_table.grad.abs().sum() > 0
    assert model.layers[0].blocks[1].mlp.fc1.weight.grad.abs().sum() > 0


def test_efficientnet_trains_and_its_inference_path_agrees():
    """In-place operations serve inference only; with gradients the plain ops run."""
    torch.manual_seed(0)
    model = models.create_model("efficientnet_lite0", drop_connect_rate=0.0, dropout_rate=0.0)
    x = torch.randn(2, 3, 64, 80)
    with torch.inference_mode():
        fast = model(x)
    plain = model(x)  # eval mode, gradients on
    plain.sum().backward()
    assert torch.equal(plain.detach(), fast)
    assert model.stem.conv.weight.grad.abs().sum() > 0


def test_prepared_lite0_gives_the_same_probabilities_on_the_examples(lite0):
    """As the app runs it (BatchNorm folded, channels-last), on the real
    bundled weights and real photos: the same top-5, probabilities to 1e-5."""
    import copy

    prepared = models.prepare_for_inference(copy.deepcopy(lite0))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert prepared.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert sum(p.numel() for p in prepared.parameters()) < sum(p.numel() for p in lite0.parameters())
    for name in ("cat.jpg", "espresso.jpg", "rocket.jpg", "coins.png"):
        expected, actual = classify(lite0, EXAMPLES / name), classify(prepared, EXAMPLES / name)
        assert actual.topk(5).indices.tolist() == expected.topk(5).indices.tolist(), name
        assert (actual - expected).abs().max().item() < 1e-5, name
    assert models.prepare_for_inference(prepared) is prepared  # again: nothing left to fold
    assert (classify(prepared, EXAMPLES / "cat.jpg") - classify(lite0, EXAMPLES / "cat.jpg")).abs().max() < 1e-5


def test_a_prepared_efficientnet_refuses_training_and_swin_is_left_alone():
    model = models.prepare_for_inference(models.create_model("efficientnet_lite0"))
    with pytest.raises(RuntimeError, match="prepared for inference"):
        model.train()
    model.eval()  # still allowed
    swin = models.create_model("swin_cifar")
    before = {k: v.clone() for k, v in swin.state_dict().items()}
    assert models.prepare_for_inference(swin) is swin
    assert all(torch.equal(before[k], v) for k, v in swin.state_dict().items())


def test_preparing_an_efficientnet_folds_in_the_weights_own_memory():
    """Folding writes into each convolution's weight, a few output channels
    at a time, and only k x k kernels are copied to channels-last (1 x 1 and
    depthwise ones are channels-last already): new tensors per layer
    fragmented the heap, and loading V2-L peaked at up to twice its size.
    The folded weights are exactly the float64 products, rounded once."""
    from models.efficientnet import _FOLD_CHUNK_ELEMENTS, ConvBNAct

    model = models.create_model("tf_efficientnetv2_s").eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.normal_()
                module.weight.normal_()
    expected, addresses = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, torch.nn.BatchNorm2d):
            bn, weight = module.bn, module.conv.weight
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            expected[name] = (weight.double() * scale.view(-1, 1, 1, 1)).float()
            addresses[name] = weight.data_ptr()
    assert max(w.numel() for w in expected.values()) > 4 * _FOLD_CHUNK_ELEMENTS  # some folds take several steps

    models.prepare_for_inference(model)
    kept = 0  # elements
    for name, module in model.named_modules():
        if name in expected:
            weight = module.conv.weight
            assert torch.equal(weight, expected[name]), name
            # Channels-last strides, as a copy would have them (the convolutions choose by them).
            assert weight.stride() == torch.empty_like(weight, memory_format=torch.channels_last).stride(), name
            assert not weight.requires_grad, name
            if weight.shape[2:] == (1, 1) or weight.shape[1] == 1:
                assert weight.data_ptr() == addresses[name], name
                kept += weight.numel()
    assert kept > 0.9 * sum(w.numel() for w in expected.values())  # most of the weights stay where they are


def test_an_efficientnet_built_under_inference_mode_can_be_prepared_outside_it():
    with torch.inference_mode():
        model = models.create_model("efficientnet_lite0")
        x = torch.randn(2, 3, 224, 224)
        before = model.eval()(x)
    models.prepare_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    with torch.inference_mode():
        assert (model(x) - before).abs().max() < 1e-4


def test_a_user_folder_cannot_replace_a_model_that_comes_with_the_app(tmp_path):
    """user_models/swin_digits (or efficientnet_lite0) is skipped with a one-line warning, the
    bundled / built-in model kept; a user folder still refreshes a user's own model."""
    import shutil

    import models

    bundled = models.BUNDLED_MODELS / "swin_digits"
    for name in ("swin_digits", "efficientnet_lite0", "mine_again"):
        (tmp_path / name).mkdir()
        for file in ("config.json", "model.safetensors"):
            shutil.copy(bundled / file, tmp_path / name / file)
    before = models.get_spec("swin_digits")
    try:
        with pytest.warns(UserWarning) as caught:
            assert models.register_user_models(tmp_path) == ["mine_again"]
        messages = sorted(str(w.message) for w in caught)
        assert len(messages) == 2 and all("\n" not in m and "comes with the app" in m for m in messages), messages
        assert models.get_spec("swin_digits") is before and not before.user
        assert models.get_spec("efficientnet_lite0").weights != models.LOCAL
        with pytest.raises(ValueError, match="comes with the app"):
            models.register_model_folder(tmp_path / "swin_digits", replace=True)
        assert models.register_user_models(tmp_path / "x") == []
        with pytest.warns(UserWarning):  # a user's own model is refreshed, as before
            assert models.register_user_models(tmp_path) == ["mine_again"]
        assert models.get_spec("mine_again").user
    finally:
        models.forget_model("mine_again")
