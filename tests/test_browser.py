"""The page in a real browser: Debian's chromium (never a downloaded one)
driven by Playwright, against ``python app.py`` (conftest's ``app_server``:
Hub offline, so Swin runs with untrained weights)."""
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
EXAMPLES_DIR = ROOT / "assets" / "examples"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
TIMEOUT_MS = 90_000

# Where a click lands on an <img> shown with object-fit (Gradio's own formula):
# the image's pixel -> page coordinates.
PIXEL_TO_PAGE = """([img, x, y]) => {
    const box = img.getBoundingClientRect();
    const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight, 1);
    const left = box.left + (box.width - img.naturalWidth * scale) / 2;
    const top = box.top + (box.height - img.naturalHeight * scale) / 2;
    return [left + (x + 0.5) * scale + window.scrollX, top + (y + 0.5) * scale + window.scrollY,
            img.naturalWidth, img.naturalHeight];
}"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"Debian's chromium is missing ({CHROMIUM}); install it with `apt-get install -y chromium` "
                    "(`make test` does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_server):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_server.url)
    page.wait_for_selector("#input-image input[type=file]", state="attached")
    yield page
    page.close()


def top_label(page) -> str:
    return page.locator("#prediction [data-testid=label-output-value]").inner_text().strip()


def wait_for_top_label(page, expected: set[str]) -> str:
    page.wait_for_function(
        """(names) => { const e = document.querySelector('#prediction [data-testid=label-output-value]');
                       return e && names.includes(e.innerText.trim()); }""", arg=sorted(expected))
    return top_label(page)


def test_upload_classify_then_look_inside_swin(page, app_server):
    ARTIFACTS.mkdir(exist_ok=True)

    # Upload a photo: the offline default classifies it.
    page.set_input_files("#input-image input[type=file]", str(EXAMPLES_DIR / "cat.jpg"))
    assert wait_for_top_label(page, CAT_CLASSES) in CAT_CLASSES
    page.wait_for_selector("#details:has-text('ms')")
    assert "the model took" in page.locator("#details").inner_text()

    # An example from the gallery replaces it.
    page.locator("button.gallery-item:has(img[src$='espresso.jpg'])").click()
    assert wait_for_top_label(page, {"espresso"}) == "espresso"

    # Swin-T: no weights offline, so the page says so, offers the offline
    # default, and still draws the views with untrained weights.
    page.locator("#architecture input").click()
    page.get_by_role("option", name="swin_tiny_patch4_window7_224").click()
    page.wait_for_selector("#notice:has-text('efficientnet_lite0, which works offline')")
    assert page.locator("#fallback").is_visible()
    page.get_by_role("tab", name="Inside Swin").click()
    page.wait_for_selector("#swin-summary:has-text('untrained weights')")
    page.wait_for_selector("#model-input img")
    before = page.locator("#query-attention img").get_attribute("src")
    assert before

    # Click three points on the model input, each in another window: each time
    # the query moves there and the views that depend on it change (the
    # marked model input, the query's attention, the window's mask).
    views = ["#model-input img", "#query-attention img", "#mask img"]

    def sources() -> list:
        return [page.locator(selector).get_attribute("src") if page.locator(selector).count() else None
                for selector in views]

    previous = sources()
    assert previous[0] and previous[1]
    for x, y in [(40, 180), (180, 40), (120, 120)]:
        handle = page.locator("#model-input img").element_handle()
        page_x, page_y, natural_w, natural_h = page.evaluate(PIXEL_TO_PAGE, [handle, x, y])
        assert (natural_w, natural_h) == (224, 224)
        page.mouse.click(page_x - page.evaluate("window.scrollX"), page_y - page.evaluate("window.scrollY"))
        page.wait_for_function(f"() => document.querySelector('#query-x input').value === '{x}'")
        assert page.locator("#query-y input").input_value() == str(y)
        page.wait_for_selector(f"#swin-summary:has-text('Query pixel ({x}, {y})')")
        page.wait_for_function(
            """(old) => { const i = document.querySelector('#query-attention img'); return i && i.src !== old; }""",
            arg=previous[1])
        now = sources()
        for selector, old, new in zip(views, previous, now):
            if old is not None or selector != "#mask img":  # the mask's tab may not be drawn while hidden
                assert new and new != old, f"{selector} did not change after the click at ({x}, {y})"
        previous = now
        # The new picture loads after its src changes: wait for it, then check it is the full-size view.
        page.wait_for_function("() => { const i = document.querySelector('#query-attention img'); "
                               "return i && i.complete && i.naturalWidth > 0; }")
        assert page.locator("#query-attention img").evaluate("i => i.naturalWidth > 300")
    page.locator("#query-attention").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)

    # The offered default brings classification back.
    page.get_by_role("tab", name="Classify & explain").click()
    page.locator("#fallback").click()
    assert wait_for_top_label(page, {"espresso"}) == "espresso"
    assert not page.locator(".toast-body.error").count()


def test_explain_the_second_class_of_the_top_k(page):
    """Classify & explain: drop a photo, click the second class of the top-k
    list, and get its map over the image and the faithfulness curves."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_input_files("#input-image input[type=file]", str(EXAMPLES_DIR / "cat.jpg"))
    wait_for_top_label(page, CAT_CLASSES)
    classes = page.locator("#prediction .confidence-set")
    page.wait_for_function("() => document.querySelectorAll('#prediction .confidence-set').length >= 2")
    second = classes.nth(1).get_attribute("data-testid").removesuffix("-confidence-set")
    assert second != top_label(page)
    classes.nth(1).click()
    page.wait_for_selector(f"#explain-selected:has-text('{second}')")
    page.wait_for_selector(f"#explain-scores:has-text('{second}')")
    assert "deletion AUC" in page.locator("#explain-scores").inner_text()
    for element in ("#explain-overlay img", "#explain-map img", "#explain-curves img"):
        page.wait_for_selector(element)
        assert page.locator(element).evaluate("i => i.complete && i.naturalWidth > 200"), element
    # A lower opacity redraws the overlay without running the model.
    before = page.locator("#explain-overlay img").get_attribute("src")
    page.locator("#explain-opacity input[type=number]").fill("0.2")
    page.locator("#explain-opacity input[type=number]").press("Enter")
    page.wait_for_function(
        "(old) => { const i = document.querySelector('#explain-overlay img'); return i && i.src !== old; }",
        arg=before)
    page.locator("#explain-curves").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "explain.png"), full_page=True)
    assert not page.locator(".toast-body.error").count()
