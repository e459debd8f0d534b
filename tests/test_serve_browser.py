"""End to end: headless Chromium (Playwright driving the system /usr/bin/chromium, never a
downloaded browser) runs generations on the page served on a free loopback port.

Without /usr/bin/chromium (or Playwright) the test fails under CI (CI=... set: `.ci/run`
installs Chromium) and is skipped, with the reason, everywhere else.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.serve_support import XSS, LiveServer, cli_sample, tiny_run
from unmask.model.pretrained import load_pretrained
from unmask.serve.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _missing(what: str, fix: str) -> None:
    message = f"{what}; {fix}"
    if os.environ.get("CI"):
        pytest.fail(f"the browser test cannot run: {message}", pytrace=False)
    pytest.skip(f"not in CI and {message}")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing",
                 "install it with `apt-get install -y chromium` (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is missing",
                 "install the dev extra: `pip install -e '.[dev]'` (make test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = tiny_run(tmp_path_factory)
    app = create_app(load_pretrained(str(run), "cpu"))
    with LiveServer(app) as live:
        live.run, live.app = run, app
        yield live


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(server.url)
    page.wait_for_function("() => document.querySelectorAll('#policy option').length > 0")
    yield page
    page.close()


TRACE = """() => {  // every value the mask counter shows, in order
  window.maskTrace = [];
  new MutationObserver(() => window.maskTrace.push(
      Number(document.getElementById('masked-count').textContent)))
    .observe(document.getElementById('masked-count'), {childList: true, characterData: true,
                                                        subtree: true});
}"""


def fill(page, **settings) -> None:
    for name, value in settings.items():
        page.fill(f"#{name}", str(value))


def output_text(page) -> str:
    return page.eval_on_selector("#output", "e => e.textContent")


def test_page_animates_to_the_cli_text(page, server):
    """The mask count falls step by step to zero and the final text is `unmask sample`'s."""
    assert "training step" in page.text_content("#model-info")
    assert page.text_content("#checkpoints").count("step 30") == 2
    fill(page, prompt="ROMEO:", length=40, steps=20, seed=5)
    page.eval_on_selector("#speed", "e => { e.value = 40; e.dispatchEvent(new Event('input')); }")
    page.evaluate(TRACE)
    page.click("#start")
    page.wait_for_selector("#status.done", timeout=30_000)
    trace = page.evaluate("window.maskTrace")
    assert trace[-1] == 0 and len(set(trace)) >= 10, trace
    assert trace == sorted(trace, reverse=True)  # never rises: masks only turn into text
    assert page.text_content("#step") == "step 20 / 20"
    assert output_text(page) == cli_sample(server.run, seed=5, prompt="ROMEO:", length=40,
                                           steps=20)
    assert page.locator("#output .cell.masked").count() == 0
    assert page.text_content("#stat-calls") == "20"


def test_markup_in_tokens_stays_text(page, server):
    """A prompt that spells <script> and <b> is drawn as characters: no element, no alert."""
    fill(page, prompt=XSS + "<b>bold</b>", length=12, steps=6, seed=1)
    page.click("#start")
    page.wait_for_selector("#status.done", timeout=30_000)
    assert output_text(page).startswith(XSS + "<b>bold</b>")
    assert page.locator("#output script, #output b").count() == 0
    assert page.dialogs == []
    assert output_text(page) == cli_sample(server.run, seed=1, prompt=XSS + "<b>bold</b>",
                                           length=12, steps=6)


def test_cancel_stops_the_generation_on_the_server(page, server):
    slots = server.app.state.slots
    before = len(slots.recent)
    fill(page, prompt="", length=60, steps=60, seed=2)
    page.eval_on_selector("#speed", "e => { e.value = 10; e.dispatchEvent(new Event('input')); }")
    page.click("#start")
    page.wait_for_function(
        "() => document.getElementById('step').textContent.startsWith('step 3 ')")
    page.click("#cancel")
    page.wait_for_selector("#status.cancelled", timeout=10_000)
    deadline = time.monotonic() + 5
    while len(slots.recent) == before:
        assert time.monotonic() < deadline, "the server kept generating"
        time.sleep(0.02)
    gen = slots.recent[-1]
    assert gen.status == "cancelled" and gen.steps_run < 20, gen.summary()
    assert page.locator("#output .cell.masked").count() > 0


def test_refusals_show_their_message(page):
    fill(page, length=100000)
    page.click("#start")
    page.wait_for_selector("#status.error")
    assert "length must be between 1 and 1024" in page.text_content("#message")
