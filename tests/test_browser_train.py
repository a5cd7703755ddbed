"""The Train tab in a real browser (Debian's chromium through Playwright,
as tests/test_browser.py): start a short digits training (the tab's tiny
Swin, 2 epochs: seconds, not minutes), see the curve appear and update each
epoch, then classify a digit with the new model."""
from pathlib import Path

import pytest

from conftest import ROOT, running_app
from demo.train_tab import TINY
from test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, top_label

pytestmark = pytest.mark.browser
DIGIT_EXAMPLE = ROOT / "assets" / "examples" / "digit_3.png"


@pytest.fixture(scope="module")
def train_app(tmp_path_factory):
    home = tmp_path_factory.mktemp("train-app")
    # One torch thread: on the shared 2-core test machine two threads per
    # process spin against the other jobs and one training epoch took minutes.
    with running_app(home, HF_HUB_OFFLINE="1", APP_USER_MODELS=str(home / "user_models"),
                     APP_TORCH_THREADS="1") as server:
        yield server, home / "user_models"


def test_train_in_the_browser_then_classify_with_the_new_model(train_app):
    server, user_models = train_app
    if not CHROMIUM.is_file():
        pytest.fail(f"Debian's chromium is missing ({CHROMIUM}); install it with `apt-get install -y chromium`.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(TIMEOUT_MS * 2)
        page.goto(server.url)
        page.get_by_role("tab", name="Train").click()
        page.locator("#train-size label", has_text=TINY).click()
        page.locator("#train-epochs input").fill("2")
        page.locator("#train-name textarea, #train-name input").first.fill("browser_digits")
        page.locator("#train-start").click()

        # The curve appears after epoch 1 and is redrawn after epoch 2, while the run still goes
        # on: every status and the curve shown with it are recorded as the page changes (the
        # final figure always differs from epoch 1's, so comparing with it would prove nothing).
        page.wait_for_selector("#train-status:has-text('Epoch 1/2')")
        # The figure itself (Gradio shows a matplotlib figure as an img): the label's icon, an svg, is gone.
        page.wait_for_selector("#train-curves [data-testid=matplotlib] img")
        first = page.locator("#train-curves").inner_html()
        page.evaluate("""() => {
            window.trainSeen = [];
            const status = document.querySelector('#train-status');
            const curves = document.querySelector('#train-curves');
            const note = () => window.trainSeen.push([status.innerText, curves.innerHTML]);
            note();
            new MutationObserver(note).observe(document.body,
                                               {subtree: true, childList: true, characterData: true,
                                                attributes: true});
        }""")
        page.wait_for_selector("#train-status:has-text('Done:')")
        seen = page.evaluate("() => window.trainSeen")
        second = [curve for status, curve in seen if "Epoch 2/2" in status]
        assert second and second[-1] != first, [status[:40] for status, _ in seen]
        assert (user_models / "browser_digits" / "model.safetensors").is_file()

        # The new model is offered in the classifier's chooser and classifies a digit.
        page.get_by_role("tab", name="Classify").click() if page.get_by_role("tab", name="Classify").count() \
            else None
        page.locator("#architecture input").click()
        page.get_by_role("option", name="browser_digits").click()
        page.set_input_files("#input-image input[type=file]", str(DIGIT_EXAMPLE))
        page.wait_for_function(
            """() => { const e = document.querySelector('#prediction [data-testid=label-output-value]');
                       return e && /^[0-9]$/.test(e.innerText.trim()); }""")
        assert top_label(page) in [str(d) for d in range(10)]
        assert not page.locator(".toast-body.error").count()
        browser.close()
