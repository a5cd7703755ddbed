"""The attention lab's Swin variants: the layouts compute the same function on
the same weights (copied by the package's converter), the converters
round-trip, Primer with identity kernels is the fused attention, Primer's
parameter counts follow the formula, and every variant still records its
attention. Tiny models (a few thousand weights): seconds on a busy CPU."""
import itertools

import pytest
import torch

import models
from models.swin import SwinTransformer
from models.swin_attention import (ATTENTION_VARIANTS, capture_attention_logits, convert_attention_state_dict,
                                   primer_parameter_count, with_attention)

LAYOUTS = ["fused", "separate", "heads_first", "parameter_randn"]
TOLERANCE = 1e-5


def tiny_swin(attention="fused", seed=0):
    """Two stages of two blocks (plain, shifted); at 20 x 20 with patch 2 the
    first stage's 10 x 10 map is padded to 12 x 12 and shifted by 2."""
    torch.manual_seed(seed)
    return SwinTransformer(patch_size=2, in_chans=3, num_classes=5, embed_dim=16, depths=(2, 2),
                           num_heads=(2, 4), window_size=4, drop_path_rate=0.0, attention=attention).eval()


def randomize(model):
    """Every weight informative (biases and the bias table too): a missed
    permutation or a dropped bias must show in the outputs."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.2))
    return model


@pytest.fixture(scope="module")
def reference():
    return randomize(tiny_swin())


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(2)
    return torch.randn(2, 3, 20, 20)


def test_every_block_is_the_chosen_variant_and_the_default_is_fused():
    model = tiny_swin("separate")
    assert model.attention == "separate"
    assert all(block.attn.attention == "separate" for _, _, block in model.stage_blocks())
    assert [b.shifted for _, _, b in model.stage_blocks()] == [False, True, False, True]
    assert tiny_swin().layers[0].blocks[0].attn.attention == "fused"
    assert "qkv.weight" in dict(models.create_model("swin_t").layers[0].blocks[0].attn.named_parameters())


def test_create_model_passes_the_variant_and_refuses_an_unknown_one():
    model = models.create_model("swin_cifar", attention="parameter_xavier", depths=(2,), num_heads=(3,))
    assert model.layers[0].blocks[1].attn.attention == "parameter_xavier"
    with pytest.raises(ValueError, match="Unknown attention 'flash'; choose one of: fused, separate"):
        tiny_swin("flash")


@pytest.mark.parametrize("source,target", list(itertools.permutations(LAYOUTS, 2)))
def test_layouts_compute_the_same_function_on_the_same_weights(reference, inputs, source, target):
    a = with_attention(reference, source)
    b = with_attention(a, target)
    assert type(b.layers[0].blocks[0].attn) is not type(a.layers[0].blocks[0].attn)
    with torch.no_grad():
        expected = reference(inputs)
        for model in (a, b):
            assert (model(inputs) - expected).abs().max().item() <= TOLERANCE
    # The training path (explicit softmax with gradients) and captured attention too.
    with models.capture_attention(a) as first, models.capture_attention(b) as second:
        out_a, out_b = a(inputs), b(inputs)
    assert (out_a - out_b).abs().max().item() <= TOLERANCE
    assert len(first) == len(second) == 4
    assert [(r.shift_size, r.padded_size) for r in first] == [((0, 0), (12, 12)), ((2, 2), (12, 12)),
                                                            ((0, 0), (8, 8)), ((2, 2), (8, 8))]
    for x, y in zip(first, second):
        assert x.attention.shape == y.attention.shape
        assert (x.attention - y.attention).abs().max().item() <= TOLERANCE


def test_without_the_converter_the_heads_first_layout_is_another_model(reference, inputs):
    """The seed's layout concatenates heads channel-minor: loading the fused
    weights as they are (the keys match) computes something else."""
    other = tiny_swin("heads_first")
    other.load_state_dict(reference.state_dict())
    with torch.no_grad():
        assert (other(inputs) - reference(inputs)).abs().max().item() > 1e-2


@pytest.mark.parametrize("layout", LAYOUTS[1:])
def test_converters_round_trip_exactly(reference, layout):
    state = reference.state_dict()
    there = convert_attention_state_dict(state, "fused", layout)
    assert any(k not in state or not torch.equal(there[k], state[k]) for k in there)  # something moved
    back = convert_attention_state_dict(there, layout, "fused")
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("primer", ["primer_shared", "primer_per_head"])
def test_primer_with_identity_kernels_is_the_fused_attention(reference, inputs, primer):
    model = with_attention(reference, primer)
    with torch.no_grad():
        assert (model(inputs) - reference(inputs)).abs().max().item() <= TOLERANCE
        for _, _, block in model.stage_blocks():  # kernels that mix neighbours: no longer the identity
            for conv in (block.attn.q_conv, block.attn.k_conv, block.attn.v_conv):
                conv.conv.weight += 0.3
        assert (model(inputs) - reference(inputs)).abs().max().item() > 1e-3
    with pytest.raises(ValueError, match="only identity kernels convert"):
        with_attention(model, "fused")


@pytest.mark.parametrize("primer,per_channel", [("primer_shared", False), ("primer_per_head", True)])
def test_primer_adds_the_parameters_the_formula_says(primer, per_channel):
    fused, model = tiny_swin(), tiny_swin(primer)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    dims = [16, 16, 32, 32]  # one per block
    # shared: 3 convolutions x (9 weights + 1 bias) = 30 per block; per head: 30 * C
    assert primer_parameter_count(16, False) == 30 and primer_parameter_count(16, True) == 480
    assert count(model) - count(fused) == sum(primer_parameter_count(c, per_channel) for c in dims)
    assert count(model) - count(fused) == (4 * 30 if not per_channel else 30 * sum(dims))


def test_the_primer_convolution_is_2d_inside_the_window():
    """A token's q changes only through its 3 x 3 neighbours in the same window (zero padding at the edges)."""
    conv = models.swin_attention.WindowDepthwiseConv(1)
    with torch.no_grad():
        conv.conv.weight.fill_(1.0)
        conv.conv.bias.zero_()
    q = torch.zeros(2, 1, 16, 1)  # two windows of 4 x 4 tokens, one channel
    q[0, 0, 5] = 1.0  # window 0, row 1, column 1
    out = conv(q, (4, 4)).view(2, 4, 4)
    expected = torch.zeros(4, 4)
    expected[0:3, 0:3] = 1.0  # its neighbours above, below, left, right and diagonal
    assert torch.equal(out[0], expected) and not out[1].any()
    q.zero_()
    q[0, 0, 3] = 1.0  # row 0, last column: the window's right edge, nothing leaks to the next row or window
    out = conv(q, (4, 4)).view(2, 4, 4)
    assert out[0, :2, 2:].sum() == 4 and out[0].sum() == 4 and not out[1].any()


@pytest.mark.parametrize("attention", list(ATTENTION_VARIANTS))
def test_every_variant_records_attention_and_trains(attention, inputs):
    model = tiny_swin(attention)
    with models.capture_attention(model) as records, capture_attention_logits(model) as logits:
        out = model(inputs)
    out.sum().backward()
    assert len(records) == len(logits) == 4
    for record, (scores, bias) in zip(records, logits):
        assert record.attention.shape == scores.shape == bias.shape
        assert torch.allclose(record.attention.sum(-1), torch.ones(()), atol=1e-5)
        assert torch.allclose(record.attention, (scores + bias).softmax(-1), atol=1e-6)
    assert all(p.grad is not None for p in model.parameters())


def test_parameter_inits_have_their_distributions():
    """randn: std 1; xavier: sqrt(2 / (C + C)); linear: nn.Linear's uniform, std 1 / sqrt(3 C)."""
    torch.manual_seed(0)
    c = 256
    expected = {"randn": 1.0, "xavier": (2 / (2 * c)) ** 0.5, "linear": (3 * c) ** -0.5}
    for init, std in expected.items():
        attn = ATTENTION_VARIANTS[f"parameter_{init}"](c, 4, 4)
        assert attn.to_q.shape == (c, c) and not attn.q_bias.any()
        assert abs(attn.to_q.std().item() / std - 1) < 0.02, init
    bound = 1 / c ** 0.5
    assert ATTENTION_VARIANTS["parameter_linear"](c, 4, 4).to_k.abs().max() <= bound
