"""The Swin views are painted into frames drawn once per architecture and
stage: a click, another head or another image draws no matplotlib figure,
each click changes what it should, and a view taken from the cache is the
very picture that painting it again gives."""
import numpy as np
import pytest

from conftest import ROOT
from demo import frames, images, panels, service as service_module, views
from demo.service import ByteLRU, InferenceService, Settings

EXAMPLES_DIR = ROOT / "assets" / "examples"
VIEWS = ("windows", "mask", "query_attention", "block_attention", "bias")


@pytest.fixture(scope="module")
def service():
    return InferenceService(Settings(torch_threads=1))


@pytest.fixture
def draw_count(monkeypatch):
    """How many matplotlib figures were drawn since the test started."""
    count = [0]
    draw = frames.figure_to_array

    def counting(fig):
        count[0] += 1
        return draw(fig)

    monkeypatch.setattr(frames, "figure_to_array", counting)
    return count


def render(forward, stage, block, head, x, y, cache):
    selection = panels.check_selection(forward.model, forward.model_input.shape[:2], stage, block, head, x, y)
    return panels.render_swin_panels(forward, selection, cache)


def points_by_window(forward, stage, block, start):
    """A pixel other than ``start`` in the same shifted window, and one in another window."""
    geometry = views.stage_geometries(forward.model, forward.model_input.shape[:2])[stage][block]
    token_size = views.token_size_of(forward.model, stage)
    window_of_token, _ = views.window_layout(geometry)
    height, width = forward.model_input.shape[:2]

    def window(point):
        row, column = views.token_under(point, token_size, geometry.feature_size, (height, width))
        return int(window_of_token[row, column])

    pixels = [(x, y) for y in range(height) for x in range(width) if (x, y) != tuple(start)]
    same = next(p for p in pixels if window(p) == window(start) and p[0] // token_size != start[0] // token_size)
    other = next(p for p in pixels if window(p) != window(start))
    return same, other


def test_a_click_draws_no_figure_and_changes_its_views(service, draw_count):
    forward = service.swin_forward(images.load_image(EXAMPLES_DIR / "cat.jpg"), "swin_cifar")
    cache = ByteLRU(2**30, lambda a: a.nbytes)
    # swin_cifar stage 0: 8 x 8 tokens of 4 pixels, windows of 4 x 4 tokens (16 pixels); block 1 is shifted.
    first = render(forward, 0, 1, "mean", 5, 5, cache)
    assert draw_count[0] == 5  # one frame per view

    def drawn_by(*selection):
        before = draw_count[0]
        panels_now = render(forward, *selection, cache)
        return draw_count[0] - before, panels_now

    same, other = points_by_window(forward, 0, 1, (5, 5))
    drawn, in_window = drawn_by(0, 1, "mean", *same)
    assert drawn == 0
    assert not np.array_equal(in_window.query_attention, first.query_attention)
    assert np.array_equal(in_window.mask, first.mask) and np.array_equal(in_window.bias, first.bias)
    drawn, elsewhere = drawn_by(0, 1, "mean", *other)
    assert drawn == 0
    assert not np.array_equal(elsewhere.mask, first.mask)  # another window: its mask
    drawn, one_head = drawn_by(0, 1, "0", *other)
    assert drawn == 0 and not np.array_equal(one_head.block_attention, elsewhere.block_attention)
    assert drawn_by(1, 0, "mean", *other)[0] == 3  # another stage: its windows, mask and bias frames

    espresso = service.swin_forward(images.load_image(EXAMPLES_DIR / "espresso.jpg"), "swin_cifar")
    before = draw_count[0]
    second = render(espresso, 0, 1, "mean", 5, 5, cache)  # another image: the frames serve it too
    assert draw_count[0] == before
    assert not np.array_equal(second.windows, first.windows)

    uncached = render(forward, 0, 1, "mean", 5, 5, None)
    for view in VIEWS:
        assert np.array_equal(getattr(first, view), getattr(uncached, view)), view


@pytest.mark.slow  # draws a whole stage's frames until the bound overflows
def test_the_app_keeps_its_drawings_within_their_bound(monkeypatch):
    """The app's own drawing cache (``InferenceService.drawings``, sized by
    ``DRAWING_CACHE_MB``), made small so that the views overflow it."""
    monkeypatch.setattr(service_module, "DRAWING_CACHE_MB", 8)  # the frames of one stage (~5 MB) and a few views
    app_service = InferenceService(Settings(torch_threads=1))
    bound = app_service.drawings.max_bytes
    assert bound == 8 * 2**20
    filled = 0
    for name in ("cat.jpg", "rocket.jpg", "coins.png", "clock.png", "espresso.jpg", "camera.png"):
        forward = app_service.swin_forward(images.load_image(EXAMPLES_DIR / name), "swin_cifar")
        for block in range(2):
            render(forward, 0, block, "mean", 3, 3, app_service.drawings)
            filled = max(filled, app_service.drawings.total_bytes)
            assert app_service.drawings.total_bytes <= bound
    assert filled > bound / 2  # the views did fill it
