"""The drawn Swin views are kept per forward: a click that moves the query
point redraws only the views that depend on it, and a view taken from the
cache is the very picture that drawing it again gives."""
import numpy as np
import pytest

from conftest import ROOT
from demo import images, panels, views
from demo.service import ByteLRU, InferenceService, Settings

EXAMPLES_DIR = ROOT / "assets" / "examples"
VIEWS = ("windows", "mask", "query_attention", "block_attention", "bias")


@pytest.fixture(scope="module")
def service():
    return InferenceService(Settings(torch_threads=1))


@pytest.fixture
def draw_count(monkeypatch):
    """How many figures were drawn since the test started."""
    count = [0]
    draw = panels.figure_to_array

    def counting(fig):
        count[0] += 1
        return draw(fig)

    monkeypatch.setattr(panels, "figure_to_array", counting)
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


def test_a_click_redraws_only_the_views_that_depend_on_it(service, draw_count):
    forward = service.swin_forward(images.load_image(EXAMPLES_DIR / "cat.jpg"), "swin_cifar")
    cache = ByteLRU(2**30, lambda a: a.nbytes)
    # swin_cifar stage 0: 8 x 8 tokens of 4 pixels, windows of 4 x 4 tokens (16 pixels); block 1 is shifted.
    first = render(forward, 0, 1, "mean", 5, 5, cache)
    assert draw_count[0] == 5

    def drawn_by(*selection) -> int:
        before = draw_count[0]
        render(forward, *selection, cache)
        return draw_count[0] - before

    same, other = points_by_window(forward, 0, 1, (5, 5))
    assert drawn_by(0, 1, "mean", 5, 5) == 0               # the same selection: nothing drawn
    assert drawn_by(0, 1, "mean", *same) == 1              # another point in the same window: its attention
    assert drawn_by(0, 1, "mean", *other) == 2             # a point in another window: its attention and mask
    assert drawn_by(0, 1, "0", *other) == 2                # one head: its query and block attention
    assert drawn_by(1, 0, "mean", *other) == 5             # another stage: every view

    other = service.swin_forward(images.load_image(EXAMPLES_DIR / "espresso.jpg"), "swin_cifar")
    before = draw_count[0]
    render(other, 0, 1, "mean", 5, 5, cache)      # another image: nothing of the first one reused
    assert draw_count[0] - before == 5

    uncached = render(forward, 0, 1, "mean", 5, 5, None)
    for view in VIEWS:
        assert np.array_equal(getattr(first, view), getattr(uncached, view)), view


def test_the_app_keeps_its_drawings_within_their_bound(service):
    assert service.drawings.max_bytes > 0
    forward = service.swin_forward(images.load_image(EXAMPLES_DIR / "rocket.jpg"), "swin_cifar")
    small = ByteLRU(3 * 2**20, lambda a: a.nbytes)  # room for a few views only
    for x in range(0, 32, 4):
        render(forward, 0, 1, "mean", x, x, small)
    assert small.total_bytes <= 3 * 2**20
