"""The Swin views (demo/views.py): geometry, placement of attention on the
image, and the figures. Placement is checked against hand-computed positions
and against the model's own path (cyclic shift with torch.roll, then
window_partition / window_reverse), never against the code under test."""
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from PIL import Image

import models
from demo import views
from models.attention import AttentionRecord
from models.swin import (cyclic_shift, reverse_cyclic_shift, shifted_window_mask, window_geometry,
                         window_partition, window_reverse)

# The seed's region table for a 9 x 9 map, window 3, shift 1.
SEED_REGIONS = np.array([[0, 0, 0, 0, 0, 0, 1, 1, 2]] * 6 + [[3, 3, 3, 3, 3, 3, 4, 4, 5]] * 2
                        + [[6, 6, 6, 6, 6, 6, 7, 7, 8]])


# --------------------------------------------------------------------------
# Ground truth from the model's own path
# --------------------------------------------------------------------------

def reference_positions(geometry):
    """``(rows, cols)`` ``[nW, N]``: original padded position of every window
    token, by rolling a map of positions as the block rolls its features."""
    hp, wp = geometry.padded_size
    flat = torch.arange(hp * wp, dtype=torch.float64).view(1, hp, wp, 1)
    windows = window_partition(cyclic_shift(flat, geometry.shift_size), geometry.window_size)
    flat = windows.reshape(geometry.num_windows, -1).long().numpy()
    return flat // wp, flat % wp


def reference_received(record, head=None):
    """Column sums over real queries, placed back with window_reverse and the reverse shift."""
    g = views.geometry_of(record)
    attention = record.attention[0].double()  # [nW, heads, N, N]
    attention = attention.mean(1) if head is None else attention[:, head]
    rows, cols = reference_positions(g)
    real_query = torch.from_numpy((rows < g.feature_size[0]) & (cols < g.feature_size[1])).double()  # [nW, N]
    received = (attention * real_query[:, :, None]).sum(1)  # [nW, N]
    placed = window_reverse(received.view(-1, *g.window_size, 1), g.window_size, *g.padded_size)
    placed = reverse_cyclic_shift(placed, g.shift_size)[0, :g.feature_size[0], :g.feature_size[1], 0]
    to_padding = (attention * real_query[:, :, None] * (1 - real_query)[:, None, :]).sum()
    return placed.numpy(), float(to_padding)


def fake_record(geometry, attention, token_size):
    heads = attention.shape[2]
    return AttentionRecord(stage=0, block=int(any(geometry.shift_size)), window_size=geometry.window_size,
                           shift_size=geometry.shift_size, feature_size=geometry.feature_size,
                           padded_size=geometry.padded_size, num_heads=heads, token_size=token_size,
                           attention=attention)


def pixel_of(row, col, token_size):
    """A pixel (x, y) inside token (row, col), not at its corner."""
    return col * token_size + token_size - 1, row * token_size + token_size // 2


GEOMETRIES = {
    "seed 9x9 shifted": window_geometry((9, 9), 3, True),
    "seed 9x9 regular": window_geometry((9, 9), 3, False),
    "16x16 padded to 21, shifted": window_geometry((16, 16), 7, True),
    "16x16 padded to 21, regular": window_geometry((16, 16), 7, False),
    "16x5: one window across": window_geometry((16, 5), 7, True),
}


# --------------------------------------------------------------------------
# Models, run once
# --------------------------------------------------------------------------

def run(name, size):
    torch.manual_seed(0)
    model = models.create_model(name)
    pixels = torch.rand(size[0], size[1], 3) * 255
    x = models.create_transform(model.spec)(Image.fromarray(pixels.to(torch.uint8).numpy()))[None]
    with torch.no_grad(), models.capture_attention(model) as records:
        model(x)
    return model, x, records


@pytest.fixture(scope="module")
def cifar():
    return run("swin_cifar", (32, 32))


@pytest.fixture(scope="module")
def swin_t():
    return run("swin_tiny_patch4_window7_224", (224, 224))


# --------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------

def test_stage_geometries_match_what_the_model_runs(cifar, swin_t):
    model, _, records = swin_t
    geometries = views.stage_geometries(model, (224, 224))
    assert [len(stage) for stage in geometries] == [2, 2, 6, 2]
    assert [stage[0].feature_size for stage in geometries] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert geometries[0][1].shift_size == (3, 3) and geometries[0][0].shift_size == (0, 0)
    assert geometries[3][1].shift_size == (0, 0)  # 7 x 7 fits in one window: no shift
    for record in records:
        assert views.geometry_of(record) == geometries[record.stage][record.block]

    model, _, records = cifar
    geometries = views.stage_geometries(model, (32, 32))
    assert geometries[0][1].padded_size == (21, 21) and geometries[0][1].shift_size == (3, 3)
    assert geometries[1][1].padded_size == (14, 14)
    assert geometries[2][1].window_size == (4, 4) and geometries[2][1].shift_size == (0, 0)
    for record in records:
        assert views.geometry_of(record) == geometries[record.stage][record.block]


def test_stage_geometries_for_sides_that_are_not_multiples():
    torch.manual_seed(0)
    model = models.create_model("swin_cifar")
    with torch.no_grad(), models.capture_attention(model) as records:
        model(torch.randn(1, 3, 30, 27))
    assert model.feature_sizes((30, 27)) == [(15, 14), (8, 7), (4, 4)]
    geometries = views.stage_geometries(model, (30, 27))
    for record in records:
        assert views.geometry_of(record) == geometries[record.stage][record.block]


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_window_layout_matches_roll_and_partition(name):
    g = GEOMETRIES[name]
    rows, cols = reference_positions(g)
    window, index = views.window_layout(g)
    for w in range(g.num_windows):
        got_rows, got_cols = views.window_token_positions(g, w)
        np.testing.assert_array_equal(got_rows, rows[w])
        np.testing.assert_array_equal(got_cols, cols[w])
        np.testing.assert_array_equal(window[rows[w], cols[w]], w)
        np.testing.assert_array_equal(index[rows[w], cols[w]], np.arange(g.window_area))


def test_window_pieces_of_the_seed_corner_window():
    g = GEOMETRIES["seed 9x9 shifted"]
    # Window 8 holds shifted rows / columns 6..8, i.e. original 7, 8 and 0.
    assert sorted(views.window_pieces(g, 8)) == [(0, 1, 0, 1), (0, 1, 7, 9), (7, 9, 0, 1), (7, 9, 7, 9)]
    assert views.window_pieces(g, 0) == [(1, 4, 1, 4)]
    assert views.window_pieces(GEOMETRIES["seed 9x9 regular"], 8) == [(6, 9, 6, 9)]


def test_model_input_image_gives_back_the_pixels(cifar):
    model, _, _ = cifar
    torch.manual_seed(1)
    pixels = (torch.rand(32, 32, 3) * 255).to(torch.uint8).numpy()
    x = models.create_transform(model.spec)(Image.fromarray(pixels))
    image = views.model_input_image(x, model.spec.mean, model.spec.std)
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert np.abs(image.astype(int) - pixels.astype(int)).max() <= 1


# --------------------------------------------------------------------------
# Region map and mask
# --------------------------------------------------------------------------

def test_region_map_figure_shows_the_seed_regions_and_mask():
    g = GEOMETRIES["seed 9x9 shifted"]
    assert g.shift_size == (1, 1) and g.padded_size == (9, 9)
    fig = views.region_map_figure(g, 8, title="stage 0, block 1, shift (1, 1)")
    assert isinstance(fig, Figure)
    left, right = fig.axes[:2]
    np.testing.assert_array_equal(left.images[0].get_array(), SEED_REGIONS)
    # Window 8 = shifted rows / cols 6..8: regions [[4, 4, 5], [4, 4, 5], [7, 7, 8]] row-major.
    regions = np.array([4, 4, 5, 4, 4, 5, 7, 7, 8])
    np.testing.assert_array_equal(right.images[0].get_array(), regions[:, None] == regions[None, :])
    assert fig._suptitle.get_text() == "stage 0, block 1, shift (1, 1)"
    assert right.get_xlabel().startswith("key token") and right.get_ylabel().startswith("query token")
    assert "window 8" in right.get_title() and "25 of 81" in right.get_title()  # 4*4 + 2*2 + 2*2 + 1*1
    # The chosen window is outlined at shifted rows / cols 6..8.
    outline = [p for p in left.patches if p.get_width() == 3 and p.get_height() == 3]
    assert [p.get_xy() for p in outline] == [(5.5, 5.5)]

    fig = views.region_map_figure(g, 0)
    assert fig.axes[1].images[0].get_array().all()  # a window inside region 0: every pair allowed


def test_region_map_figure_of_a_regular_block_and_of_padding():
    fig = views.region_map_figure(GEOMETRIES["seed 9x9 regular"], 4, title="regular")
    assert not fig.axes[0].images[0].get_array().any()  # one region
    assert fig.axes[1].images[0].get_array().all()
    g = GEOMETRIES["16x16 padded to 21, shifted"]
    fig = views.region_map_figure(g, 8)
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), shifted_window_mask(
        g.padded_size, g.window_size, g.shift_size)[8].numpy())
    assert "9 image tokens, 40 padding" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="9 windows"):
        views.region_map_figure(g, 9)


# --------------------------------------------------------------------------
# Query attention: placement checked with one-hot fake records
# --------------------------------------------------------------------------

def one_hot_record(geometry, window, query, key, head=1, heads=2, token_size=4):
    attention = torch.zeros(1, geometry.num_windows, heads, geometry.window_area, geometry.window_area)
    attention[0, window, head, query, key] = 1.0
    return fake_record(geometry, attention, token_size)


def hot_pixels(image_map):
    ys, xs = np.nonzero(image_map)
    return (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)


def test_one_hot_placement_by_hand_shifted_block():
    g = GEOMETRIES["seed 9x9 shifted"]
    # Click pixel (1, 2): token (0, 0) sits at shifted (8, 8): window 8, row 8.
    # Key 0 of window 8 is shifted (6, 6) = original (7, 7): pixels 28..31.
    record = one_hot_record(g, window=8, query=8, key=0)
    image_map = views.query_attention_map(record, (1, 2), head=1)
    assert image_map.shape == (36, 36)
    assert hot_pixels(image_map) == (28, 32, 28, 32)
    assert np.all(image_map[28:32, 28:32] == 1.0) and image_map.sum() == 16
    np.testing.assert_array_equal(views.query_attention_map(record, (1, 2), head=None)[28:32, 28:32], 0.5)
    assert not views.query_attention_map(record, (1, 2), head=0).any()
    # The other way round the wrap: token (8, 8) is shifted (7, 7), window 8,
    # row 4; key 8 is shifted (8, 8) = original (0, 0): the top-left pixels.
    record = one_hot_record(g, window=8, query=4, key=8)
    assert hot_pixels(views.query_attention_map(record, (33, 34), head=1)) == (0, 4, 0, 4)
    rows, cols = views.query_window_tokens(record, (33, 34))
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(r, c) for r in (0, 7, 8) for c in (0, 7, 8)]


def test_one_hot_placement_by_hand_regular_block():
    g = GEOMETRIES["seed 9x9 regular"]
    # Token (0, 0) is row 0 of window 0; key 5 is (1, 2): pixel rows 4..7, cols 8..11.
    record = one_hot_record(g, window=0, query=0, key=5)
    assert hot_pixels(views.query_attention_map(record, (1, 2), head=1)) == (4, 8, 8, 12)
    # Token (4, 7) (pixel x 30, y 17) is row 1 * 3 + 1 = 4 of window 1 * 3 + 2 = 5.
    record = one_hot_record(g, window=5, query=4, key=0)
    assert hot_pixels(views.query_attention_map(record, (30, 17), head=1)) == (12, 16, 24, 28)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_every_query_lands_on_its_key(name):
    """Query i of every window attends only to key (i + 1) % N; each real
    token's map must be one-hot at that key's position, or empty (all weight
    on padding) when the key is padding."""
    g, t = GEOMETRIES[name], 2
    n = g.window_area
    attention = torch.zeros(1, g.num_windows, 1, n, n)
    attention[0, :, 0, torch.arange(n), (torch.arange(n) + 1) % n] = 1.0
    record = fake_record(g, attention, t)
    rows, cols = reference_positions(g)
    where = {(int(rows[w, i]), int(cols[w, i])): (w, i) for w in range(g.num_windows) for i in range(n)}
    for r in range(g.feature_size[0]):
        for c in range(g.feature_size[1]):
            w, i = where[(r, c)]
            key = (rows[w, (i + 1) % n], cols[w, (i + 1) % n])
            result = views.query_attention(record, pixel_of(r, c, t), head=0)
            assert (result.window, result.row, result.token) == (w, i, (r, c))
            expected = np.zeros(g.feature_size)
            if key[0] < g.feature_size[0] and key[1] < g.feature_size[1]:
                expected[key] = 1.0
            np.testing.assert_array_equal(result.tokens, expected)
            assert result.padding_weight == 1.0 - expected.sum()


def test_window_mask_and_outline_of_a_wrapped_window():
    g = GEOMETRIES["seed 9x9 shifted"]
    record = one_hot_record(g, window=8, query=8, key=0)
    mask = views.query_window_mask(record, (1, 2))
    expected = np.zeros((36, 36), dtype=bool)
    for r0, r1 in ((0, 4), (28, 36)):
        for c0, c1 in ((0, 4), (28, 36)):
            expected[r0:r1, c0:c1] = True
    np.testing.assert_array_equal(mask, expected)

    image = np.full((36, 36, 3), 128, dtype=np.uint8)
    fig = views.attention_overlay_figure(image, views.query_attention_map(record, (1, 2), 1),
                                         "stage 0, block 1, head 1, shift (1, 1)", query_xy=(1, 2),
                                         window_outline=mask)
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    segments = {tuple(map(tuple, s.tolist())) for s in lines.get_segments()}
    assert ((0.0, 4.0), (4.0, 4.0)) in segments and ((28.0, 28.0), (36.0, 28.0)) in segments
    assert len(segments) == 16  # 4 pieces, 4 sides each (the image edges count)
    marker = ax.lines[0]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (1.5, 2.5)  # centre of pixel (1, 2)
    assert fig.axes[1].get_ylabel() == "attention weight"  # the colour bar
    assert ax.get_title() == "stage 0, block 1, head 1, shift (1, 1)"


def test_clicks_and_images_that_do_not_fit_are_refused():
    g = GEOMETRIES["seed 9x9 shifted"]
    record = one_hot_record(g, window=8, query=8, key=0)
    with pytest.raises(ValueError, match="click inside the image"):
        views.query_attention_map(record, (36, 0), head=1)
    with pytest.raises(ValueError, match="Head 2 does not exist"):
        views.query_attention_map(record, (0, 0), head=2)
    with pytest.raises(ValueError, match="does not match"):
        views.window_grid_overlay(np.zeros((40, 36, 3), np.uint8), g, 4)
    with pytest.raises(ValueError, match="does not match"):
        views.query_attention_map(record, (0, 0), head=1, image_hw=(30, 36))


# --------------------------------------------------------------------------
# Query attention on real captures
# --------------------------------------------------------------------------

def real_row(record, window, query, head):
    row = record.attention[0, window, :, query].double()
    return (row.mean(0) if head is None else row[head]).numpy()


@pytest.mark.parametrize("head", [None, 2])
def test_query_in_a_wrapped_window_of_swin_t(swin_t, head):
    _, _, records = swin_t
    record = views.find_record(records, 0, 1)  # 56 x 56, window 7, shift 3
    click = (223, 222)  # token (55, 55): shifted (52, 52), window 63 (the last), row 3 * 7 + 3
    result = views.query_attention(record, click, head)
    assert (result.token, result.window, result.row) == ((55, 55), 63, 24)
    np.testing.assert_allclose(result.weights, real_row(record, 63, 24, head))
    rows, cols = views.query_window_tokens(record, click)
    expected = {(r, c) for r in [52, 53, 54, 55, 0, 1, 2] for c in [52, 53, 54, 55, 0, 1, 2]}
    assert set(zip(rows.tolist(), cols.tolist())) == expected

    tokens = result.tokens
    in_window = np.zeros(tokens.shape, dtype=bool)
    in_window[rows, cols] = True
    assert tokens[~in_window].sum() == 0
    assert abs(tokens.sum() - 1.0) < 1e-5 and result.padding_weight == 0
    # The query shares a region with the 4 x 4 bottom-right tokens only; the
    # wrapped tokens at the other edges are masked (weights below 1e-30).
    same_region = np.zeros(tokens.shape, dtype=bool)
    same_region[52:, 52:] = True
    assert tokens[same_region].min() > 1e-6
    assert tokens[in_window & ~same_region].max() < 1e-30

    image_map = views.query_attention_map(record, click, head)
    assert image_map.shape == (224, 224)
    np.testing.assert_array_equal(image_map[::4, ::4], tokens)
    np.testing.assert_array_equal(image_map, np.kron(tokens, np.ones((4, 4))))


@pytest.mark.parametrize("head", [None, 0])
def test_query_in_a_regular_block_of_swin_t(swin_t, head):
    _, _, records = swin_t
    record = views.find_record(records, 1, 0)  # 28 x 28, token 8 pixels
    click = (200, 75)  # token (9, 25): window (1, 3), row 2 * 7 + 4
    result = views.query_attention(record, click, head)
    assert (result.token, result.window, result.row) == ((9, 25), 7, 18)
    np.testing.assert_allclose(result.weights, real_row(record, 7, 18, head))
    image_map = views.query_attention_map(record, click, head)
    support = image_map > 0
    expected = np.zeros((224, 224), dtype=bool)
    expected[56:112, 168:224] = True  # rows 7..13, cols 21..27 of 8-pixel tokens
    np.testing.assert_array_equal(support, expected)
    assert abs(image_map[::8, ::8].sum() - 1.0) < 1e-5


@pytest.mark.parametrize("head", [None, 1])
def test_padding_takes_weight_that_no_pixel_shows(cifar, head):
    _, _, records = cifar
    # Regular block, 16 x 16 padded to 21: token (15, 15) is row 1 * 7 + 1 of
    # window 8, whose real tokens are (14..15, 14..15); its 45 other keys are padding.
    record = views.find_record(records, 0, 0)
    result = views.query_attention(record, (31, 31), head)
    assert (result.window, result.row) == (8, 8)
    row = real_row(record, 8, 8, head)
    key_y, key_x = np.divmod(np.arange(49), 7)
    padding = (key_y >= 2) | (key_x >= 2)
    assert result.padding_weight == pytest.approx(row[padding].sum(), abs=1e-12)
    assert result.padding_weight > 0.05  # the case is exercised
    tokens = result.tokens
    assert abs(tokens.sum() - (1.0 - result.padding_weight)) < 1e-5
    assert abs(tokens[14:, 14:].sum() - tokens.sum()) == 0
    image_map = views.query_attention_map(record, (31, 31), head)
    assert abs(image_map[::2, ::2].sum() - (1.0 - result.padding_weight)) < 1e-5

    # Shifted block: token (0, 0) wraps into window 8 with 40 padding keys,
    # all in other regions, so the mask leaves them (almost) nothing.
    record = views.find_record(records, 0, 1)
    result = views.query_attention(record, (0, 1), head)
    assert (result.token, result.window, result.row) == ((0, 0), 8, 32)
    rows, cols = views.query_window_tokens(record, (0, 1))
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(r, c) for r in range(3) for c in range(3)]
    assert result.padding_weight < 1e-30
    assert abs(result.tokens.sum() - (1.0 - result.padding_weight)) < 1e-5
    assert result.tokens[:3, :3].min() > 0 and result.tokens[3:].sum() == result.tokens[:, 3:].sum() == 0


def test_image_size_not_a_multiple_of_the_token():
    torch.manual_seed(0)
    model = models.create_model("swin_cifar")
    with torch.no_grad(), models.capture_attention(model) as records:
        model(torch.randn(1, 3, 30, 27))
    record = views.find_record(records, 1, 1)  # 8 x 7 tokens of 4 pixels; the last row / column cut
    image_map = views.query_attention_map(record, (26, 29), None, image_hw=(30, 27))
    tokens = views.query_attention_tokens(record, (26, 29), None)
    assert image_map.shape == (30, 27) and tokens.shape == (8, 7)
    np.testing.assert_array_equal(image_map, np.kron(tokens, np.ones((4, 4)))[:30, :27])


# --------------------------------------------------------------------------
# Whole-block attention
# --------------------------------------------------------------------------

@pytest.mark.parametrize("stage, block, head", [(0, 1, None), (0, 0, 2), (1, 3, None), (2, 1, 0)])
def test_block_attention_on_cifar(cifar, stage, block, head):
    _, _, records = cifar
    record = views.find_record(records, stage, block)
    expected, to_padding = reference_received(record, head)
    tokens = views.block_attention_tokens(record, head)
    np.testing.assert_allclose(tokens, expected, atol=1e-9)
    real_tokens = record.feature_size[0] * record.feature_size[1]
    assert tokens.sum() == pytest.approx(real_tokens - to_padding, abs=1e-4)
    if record.padded_size != record.feature_size and not any(record.shift_size):
        assert to_padding > 1.0  # padding keys took weight that the map leaves out
    image_map = views.block_attention_map(record, head)
    t = record.token_size
    assert image_map.shape == (32, 32)
    np.testing.assert_array_equal(image_map[::t, ::t], tokens)


def test_block_attention_on_swin_t_keeps_all_mass(swin_t):
    _, _, records = swin_t
    record = views.find_record(records, 0, 1)
    tokens = views.block_attention_tokens(record, None)
    expected, to_padding = reference_received(record)
    assert to_padding == 0
    np.testing.assert_allclose(tokens, expected, atol=1e-9)
    assert tokens.sum() == pytest.approx(56 * 56, rel=1e-6)
    image_map = views.block_attention_map(record, None)
    assert image_map.shape == (224, 224) and image_map.sum() == pytest.approx(56 * 56 * 16, rel=1e-6)


# --------------------------------------------------------------------------
# Window grid
# --------------------------------------------------------------------------

def line_columns(overlay):
    return set(np.flatnonzero((overlay == 255).all(axis=(0, 2))).tolist())


def test_window_grid_overlay_places_boundaries_exactly():
    grey = np.full((36, 36, 3), 100, dtype=np.uint8)
    regular = views.window_grid_overlay(grey, GEOMETRIES["seed 9x9 regular"], 4, scale=1)
    assert regular.shape == (36, 36, 3) and regular.dtype == np.uint8
    assert line_columns(regular) == {12, 24}
    shifted = views.window_grid_overlay(grey, GEOMETRIES["seed 9x9 shifted"], 4, scale=1)
    assert line_columns(shifted) == {4, 16, 28}  # tokens 1, 4, 7: shift + k * window
    assert line_columns(shifted.transpose(1, 0, 2)) == {4, 16, 28}
    # Window 8's four pieces (the corners) share one colour, unlike a regular window.
    corners = [tuple(shifted[y, x]) for y, x in ((2, 2), (2, 34), (34, 2), (34, 34))]
    assert len(set(corners)) == 1 and corners[0] != tuple(shifted[18, 18])
    # Upscaling repeats pixels.
    double = views.window_grid_overlay(grey, GEOMETRIES["seed 9x9 shifted"], 4, scale=2)
    assert double.shape == (72, 72, 3) and line_columns(double) == {8, 32, 56}
    assert tuple(double[5, 5]) == corners[0]


def test_window_grid_overlay_shows_padding_beyond_the_image():
    g = GEOMETRIES["16x16 padded to 21, shifted"]
    grey = np.full((32, 32, 3), 100, dtype=np.uint8)
    white = np.full((32, 32, 3), 255, dtype=np.uint8)
    a = views.window_grid_overlay(grey, g, 2, scale=1)
    b = views.window_grid_overlay(white, g, 2, scale=1)
    assert a.shape == (42, 42, 3)
    differs = (a != b).any(axis=2)
    lines = (a == 255).all(axis=2)
    np.testing.assert_array_equal(differs | lines, np.pad(np.ones((32, 32), bool), ((0, 10), (0, 10))) | lines)
    assert len({tuple(p) for p in a[34:, :30].reshape(-1, 3)} - {(255, 255, 255)}) >= 2  # stripes


def test_window_grid_figure_names_stage_window_and_shift(cifar):
    model, x, _ = cifar
    image = views.model_input_image(x[0], model.spec.mean, model.spec.std)
    geometries = views.stage_geometries(model, (32, 32))
    fig = views.window_grid_figure(image, geometries[0], views.token_size_of(model, 0), 0)
    assert isinstance(fig, Figure)
    regular, shifted = fig.axes[:2]
    assert "stage 0, block 0" in regular.get_title() and "shift (0, 0)" in regular.get_title()
    assert "stage 0, block 1" in shifted.get_title() and "window 7 x 7" in shifted.get_title()
    assert "shift (3, 3)" in shifted.get_title()
    labels = [text.get_text() for text in shifted.texts]
    assert labels.count("8") == 4 and labels.count("0") == 1  # the corner window's four pieces
    assert [text.get_text() for text in regular.texts].count("8") == 1
    assert list(regular.images[0].get_extent()) == [0, 42, 42, 0]
    fig = views.window_grid_figure(image, geometries[2], views.token_size_of(model, 2), 2)
    assert "no shift" in fig.axes[1].get_title()


# --------------------------------------------------------------------------
# Relative position bias and overlays
# --------------------------------------------------------------------------

@pytest.mark.parametrize("model_fixture, stage", [("cifar", 0), ("swin_t", 3)])
def test_relative_position_bias_figure(request, model_fixture, stage):
    model = request.getfixturevalue(model_fixture)[0]
    block = model.layers[stage].blocks[1]
    bias = block.attn.relative_position_bias_map()
    heads = model.num_heads[stage]
    assert bias.shape == (heads, 13, 13)
    fig = views.relative_position_bias_figure(bias, title=f"stage {stage}, block 1")
    assert len(fig.axes) == heads + 1
    panels, colorbar = fig.axes[:heads], fig.axes[heads]
    assert [ax.get_title() for ax in panels] == [f"head {h}" for h in range(heads)]
    assert colorbar.get_ylabel() == "bias added to the attention logit"
    for h, ax in enumerate(panels):
        np.testing.assert_allclose(ax.images[0].get_array(), bias[h].numpy(), rtol=1e-6)
        assert list(ax.images[0].get_extent()) == [-6.5, 6.5, 6.5, -6.5]
    assert list(panels[0].get_xticks()) == [-6, -3, 0, 3, 6]
    # Offset (dy, dx) = (0, 0) sits at the centre: the table row of a token with itself.
    index_of_zero = 6 * 13 + 6
    assert bias[0, 6, 6] == block.attn.relative_position_bias_table[index_of_zero, 0]


def test_attention_overlay_figure_of_a_block_map(cifar):
    model, x, records = cifar
    image = views.model_input_image(x[0], model.spec.mean, model.spec.std)
    record = views.find_record(records, 0, 1)
    block_map = views.block_attention_map(record, None)
    title = views.attention_title(record, None)
    assert title == "stage 0, block 1, mean of heads, shift (3, 3)"
    fig = views.attention_overlay_figure(image, block_map, title, colorbar_label="attention received")
    heat = fig.axes[0].images[1]
    assert heat.get_clim() == (0.0, pytest.approx(block_map.max()))
    assert fig.axes[1].get_ylabel() == "attention received"
    with pytest.raises(ValueError, match="does not match"):
        views.attention_overlay_figure(image, block_map[:16], title)
