"""Swagger UI in a real browser (Debian's chromium, headless, driven by Playwright): "Try it out" then "Execute" on
/explain/{model} and on the image upload, with the defaults the page offers, answer 200 and show the result, and
the page asks nothing of any other host. Skipped where chromium or Playwright is not installed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.conftest import ROOT
from tests.support.live import start_service, stop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
         "--no-first-run", "--disable-component-update", "--disable-sync"]
STEP_MS = 30_000  # a bound only a hang reaches


@pytest.fixture(scope="module")
def docs_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, list[str]]]:
    base, process = start_service()
    requested: list[str] = []
    try:
        with playwright_api.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.set_default_timeout(STEP_MS)
            # every request that reaches the network layer (one the page's Content-Security-Policy blocks never does)
            def record(route: Any) -> None:
                requested.append(route.request.url)
                route.continue_()

            page.route("**/*", record)
            page.goto(f"{base}/docs")
            page.wait_for_selector(".opblock")
            yield page, base, requested
            browser.close()
    finally:
        stop(process)


def try_it_out(page: Any, operation_id: str) -> Any:
    """Expand an operation, press "Try it out" and return its block."""
    block = page.locator(f"[id^='operations-'][id$='-{operation_id}']")
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    return block


def executed_status(block: Any) -> str:
    block.locator(".execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    return str(status.inner_text()).strip()


def test_explain_answers_200_with_the_page_s_defaults(docs_page):
    page, _, _ = docs_page
    block = try_it_out(page, "explain_explain__model__post")
    assert executed_status(block) == "200"
    assert "relevance" in block.locator(".live-responses-table tbody .response-col_description").first.inner_text()


def test_the_upload_answers_200_and_shows_the_heatmap(docs_page):
    page, _, _ = docs_page
    block = try_it_out(page, "explain_image_explain__model__image_post")
    block.locator("input[type=file]").set_input_files(str(ROOT / "docs" / "digit.png"))
    assert executed_status(block) == "200"
    picture = block.locator(".live-responses-table tbody .response-col_description img").first
    picture.wait_for()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    assert page.evaluate("(img) => img.naturalWidth", picture.element_handle()) >= 256  # the heatmap, drawn


def test_the_text_example_answers_200_with_tokens_and_top_words(docs_page):
    page, base, _ = docs_page
    page.goto(f"{base}/docs")  # afresh: the test before left /explain open
    page.wait_for_selector(".opblock")
    block = try_it_out(page, "explain_explain__model__post")
    block.locator(".parameters select").first.select_option("sentiment")
    block.locator(".body-param-options select, .examples-select select").first.select_option("sentiment")
    assert executed_status(block) == "200"
    answer = block.locator(".live-responses-table tbody .response-col_description").first.inner_text()
    assert '"top_positive"' in answer and '"token": "[CLS]"' in answer


def test_the_html_explanation_shows_each_token_coloured(docs_page):
    """The page /explain answers with format html, opened in the browser: each word piece a coloured span, red where
    it speaks for the class and blue against, nothing fetched from anywhere."""
    page, base, requested = docs_page
    body = {"inputs": ["The acting was wonderful, but the plot was a terrible mess."], "target": "positive"}
    numbers = httpx2.post(f"{base}/explain/sentiment", json=body).json()["explanations"][0]["text"]["tokens"]
    html = httpx2.post(f"{base}/explain/sentiment", json={**body, "format": "html"}).text
    before = len(requested)
    page.set_content(html)
    spans = page.locator("span.token")
    words = [t for t in numbers if not t["special"]]
    assert spans.count() == len(words)
    colours = [str(c) for c in spans.evaluate_all("(all) => all.map((s) => getComputedStyle(s).backgroundColor)")]
    texts = [str(t) for t in spans.all_inner_texts()]
    strongest = max(range(len(words)), key=lambda i: abs(words[i]["relevance"]))
    assert texts[strongest] == "wonderful" and colours[strongest] == "rgb(255, 0, 0)"
    weakest_negative = min(range(len(words)), key=lambda i: words[i]["relevance"])
    red, green, blue = (int(v) for v in colours[weakest_negative][4:-1].split(","))
    assert blue == 255 and red == green < 255
    assert page.locator("h2").first.inner_text().startswith("class positive")
    assert requested[before:] == []


def test_the_page_asked_nothing_of_another_host(docs_page):
    page, base, requested = docs_page
    page.goto(f"{base}/redoc")
    page.wait_for_selector("h1")
    elsewhere = [url for url in requested if not url.startswith((base, "blob:", "data:"))]
    assert requested and elsewhere == []
