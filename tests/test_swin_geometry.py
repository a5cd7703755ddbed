"""The Swin geometry functions alone: partition / reverse, the shifted-window
region map of the seed, the mask, the relative position index, and the
window / shift chosen at run time."""
import itertools

import pytest
import torch

from models.swin import (
    relative_position_index,
    shifted_window_mask,
    shifted_window_regions,
    window_geometry,
    window_partition,
    window_reverse,
)

# The seed's table: a 9 x 9 map, window 3, shift 1.
SEED_REGIONS_9x9 = [[0, 0, 0, 0, 0, 0, 1, 1, 2]] * 6 + [[3, 3, 3, 3, 3, 3, 4, 4, 5]] * 2 + [[6, 6, 6, 6, 6, 6, 7, 7, 8]]


@pytest.mark.parametrize("size,window", [((14, 21), (7, 7)), ((12, 8), (4, 2)), ((7, 7), (7, 7))])
def test_partition_reverse_round_trip(size, window):
    x = torch.randn(2, *size, 5)
    windows = window_partition(x, window)
    assert windows.shape == (2 * (size[0] // window[0]) * (size[1] // window[1]), *window, 5)
    assert torch.equal(window_reverse(windows, window, *size), x)


def test_partition_orders_windows_row_major_and_tokens_row_major():
    h, w, m = 6, 9, 3
    x = torch.arange(h * w).view(1, h, w, 1)
    windows = window_partition(x, (m, m))
    for index, window in enumerate(windows):
        wy, wx = divmod(index, w // m)
        assert torch.equal(window[..., 0], x[0, wy * m:(wy + 1) * m, wx * m:(wx + 1) * m, 0])


def test_region_map_equals_the_seed_table():
    assert shifted_window_regions((9, 9), (3, 3), (1, 1)).tolist() == SEED_REGIONS_9x9


def test_region_map_without_shift_is_one_region():
    assert shifted_window_regions((14, 14), (7, 7), (0, 0)).eq(0).all()


def test_mask_lets_exactly_the_same_region_pairs_attend():
    regions = shifted_window_regions((9, 9), (3, 3), (1, 1))
    mask = shifted_window_mask((9, 9), (3, 3), (1, 1))
    assert mask.shape == (9, 9, 9) and mask.dtype == torch.bool
    for index in range(9):
        wy, wx = divmod(index, 3)
        tokens = [(wy * 3 + i, wx * 3 + j) for i in range(3) for j in range(3)]
        for (a, pa), (b, pb) in itertools.product(enumerate(tokens), repeat=2):
            assert mask[index, a, b].item() == (regions[pa].item() == regions[pb].item())
    # Windows away from the wrapped last row / column are all one region.
    assert mask[0].all() and mask[4].all()
    # The bottom-right window holds four regions (4, 5, 7, 8 of the seed's table).
    assert not mask[8].all()
    assert sorted({regions[6 + i, 6 + j].item() for i in range(3) for j in range(3)}) == [4, 5, 7, 8]


def test_mask_matches_the_seed_construction():
    # The seed builds the mask as (region_j - region_i) != 0 -> -100.
    hp, wp, m, s = 14, 21, 7, 3
    img_mask = torch.zeros(1, hp, wp, 1)
    count = 0
    for hs in (slice(0, -m), slice(-m, -s), slice(-s, None)):
        for ws in (slice(0, -m), slice(-m, -s), slice(-s, None)):
            img_mask[:, hs, ws, :] = count
            count += 1
    windows = window_partition(img_mask, (m, m)).view(-1, m * m)
    seed_blocked = (windows.unsqueeze(1) - windows.unsqueeze(2)) != 0
    assert torch.equal(shifted_window_mask((hp, wp), (m, m), (s, s)), ~seed_blocked)


def test_relative_position_index_reads_offsets():
    m = 7
    index = relative_position_index((m, m), m)
    assert index.shape == (49, 49)
    assert index.min() == 0 and index.max() == (2 * m - 1) ** 2 - 1
    # Token 0 is (0, 0); token 48 is (6, 6): offset (-6, -6) -> row 0; (6, 6) -> the last row.
    assert index[0, 48] == 0 and index[48, 0] == (2 * m - 1) ** 2 - 1
    assert (index.diagonal() == (m - 1) * (2 * m - 1) + (m - 1)).all()  # offset (0, 0) is the centre
    # A window smaller than the table reads the same rows for the same offsets.
    small = relative_position_index((3, 4), m)
    assert small[0, 0] == index[0, 0] and small[4, 0] == (1 + m - 1) * (2 * m - 1) + (0 + m - 1)


@pytest.mark.parametrize("size,shifted,window,shift,padded", [
    ((56, 56), False, (7, 7), (0, 0), (56, 56)),
    ((56, 56), True, (7, 7), (3, 3), (56, 56)),
    ((7, 7), True, (7, 7), (0, 0), (7, 7)),        # fits in one window: no shift
    ((16, 16), True, (7, 7), (3, 3), (21, 21)),    # padded to whole windows
    ((4, 4), True, (4, 4), (0, 0), (4, 4)),        # smaller than the window: window shrinks
    ((5, 20), True, (5, 7), (0, 3), (5, 21)),      # per side
])
def test_window_geometry_follows_the_feature_map(size, shifted, window, shift, padded):
    g = window_geometry(size, 7, shifted)
    assert (g.window_size, g.shift_size, g.padded_size, g.feature_size) == (window, shift, padded, size)


@pytest.mark.parametrize("size,shifted", [((14, 21), True), ((16, 16), True), ((16, 16), False), ((5, 20), True),
                                          ((7, 7), True)])
def test_window_token_order_is_pad_shift_partition_in_one_gather(size, shifted):
    from models.swin import cyclic_shift, window_token_order

    g = window_geometry(size, 7, shifted)
    h, w = size
    x = torch.randn(2, h, w, 3)
    padded = torch.nn.functional.pad(x, (0, 0, 0, g.padded_size[1] - w, 0, g.padded_size[0] - h))
    expected = window_partition(cyclic_shift(padded, g.shift_size), g.window_size).reshape(2, -1, 3)
    to_windows, from_windows = window_token_order(g)
    flat = torch.cat([x.reshape(2, h * w, 3), torch.zeros(2, 1, 3)], dim=1)
    assert torch.equal(flat[:, to_windows], expected)
    assert torch.equal(expected[:, from_windows], x.reshape(2, h * w, 3))
