"""The web app in a real browser: Debian's chromium driven by Playwright, against the in-process server.

Each test saves screenshots in its tmp dir. Without /usr/bin/chromium the tests
skip, except in CI (CI=true), where .ci/run installs it and a missing browser is
a failure. Every page checks that it sent no request beyond this machine.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from test_app import (  # noqa: F401 (the fixtures of the in-process server)
    EXAMPLE_IMAGE, has_captioning, outbound, picture, plugins, server, tiny_captioner,
)

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() and os.environ.get("CI") != "true":
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app, with 10 s to find anything; afterwards, every request must have stayed local."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    hosts = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname) if request.url.startswith(("http", "ws")) else None)
    page.goto(server)
    yield page
    context.close()
    assert hosts == {"127.0.0.1"}, f"the page reached beyond this machine: {hosts}"


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def lengths(text, reads: int, pause: float) -> list[int]:
    """The continuation's length, read `reads` times `pause` seconds apart (a busy page reads slower)."""
    seen = []
    for _ in range(reads):
        seen.append(len(text.input_value()))
        time.sleep(pause)
    return seen


def test_a_typed_prompt_streams_growing_text_and_stop_ends_it(page, tmp_path):
    open_tab(page, "completion")
    run, stop = page.locator("#completion-run-button"), page.locator("#completion-stop-button")
    suggest = page.locator("#completion-suggest-button")
    expect(stop).to_be_hidden()  # nothing to stop yet
    page.locator("#completion-prompt textarea").fill("Shall I compare thee")
    page.locator("#completion-max_new_tokens input").fill("10000")
    page.get_by_role("button", name="More options").click()
    page.locator("#completion-min_new_tokens input").fill("10000")  # no end of text: it runs until Stop
    run.click()
    text = page.locator("#completion-text textarea")
    expect(text).not_to_have_value("", timeout=20_000)
    # 10,000 tokens take the tiny model a few seconds on a quiet machine, and Stop shows only until the end
    growing = lengths(text, reads=3, pause=0.1)
    expect(run).to_be_disabled()
    expect(suggest).to_be_disabled()
    stop.click()
    page.screenshot(path=tmp_path / "completion-stopped.png", full_page=True)
    assert growing[0] < growing[1] < growing[2], growing
    expect(stop).to_be_hidden()
    expect(run).to_be_enabled()
    expect(suggest).to_be_enabled()
    time.sleep(1)  # a partial output already on its way may still land
    stopped = lengths(text, reads=2, pause=1)
    assert stopped[0] == stopped[1], "the text kept growing after Stop"


def test_run_is_set_back_after_a_finished_run_and_after_an_error_named_by_its_labels(page, tmp_path):
    open_tab(page, "completion")
    run, stop = page.locator("#completion-run-button"), page.locator("#completion-stop-button")
    page.locator("#completion-prompt textarea").fill("Shall I compare thee")
    page.locator("#completion-max_new_tokens input").fill("5")
    run.click()
    expect(page.locator("#completion-text textarea")).not_to_have_value("", timeout=20_000)
    expect(run).to_be_enabled()
    expect(stop).to_be_hidden()
    page.get_by_role("button", name="More options").click()
    page.locator("#completion-min_new_tokens input").fill("50")
    run.click()
    expect(page.get_by_text("option min new tokens (50) must not exceed max new tokens (5)")).to_be_visible()
    page.screenshot(path=tmp_path / "option-error.png", full_page=True)
    expect(run).to_be_enabled()
    expect(stop).to_be_hidden()


def test_the_page_opens_on_completion_under_a_plain_header_at_readmes_defaults(page):
    expect(page.get_by_role("tab").first).to_have_text("completion")  # the page has drawn its tabs
    tabs = page.get_by_role("tab").all_inner_texts()
    assert tabs[0] == "completion" and tabs[1:] == sorted(tabs[1:]), tabs
    expect(page.get_by_role("tab", name="completion", exact=True)).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("heading", name="genseq")).to_be_visible()
    expect(page.get_by_text("Small recurrent neural networks (LSTMs) that run on this server")).to_be_visible()
    expect(page.locator("#completion-temperature input[type=number]")).to_have_value("0.7")
    expect(page.locator("#completion-top_p input[type=number]")).to_have_value("0.9")


def test_a_clicked_suggestion_is_appended_to_the_prompt(page, tmp_path):
    open_tab(page, "completion")
    prompt = page.locator("#completion-prompt textarea")
    prompt.fill("Shall I compare thee to a ")
    page.locator("#completion-suggest-button").click()
    first = page.locator("#completion-suggestions [data-testid$='-confidence-set']").first
    expect(first).to_be_visible()
    word = first.get_attribute("data-testid").removesuffix("-confidence-set")
    page.screenshot(path=tmp_path / "suggestions.png", full_page=True)
    first.click()
    expect(prompt).to_have_value(f"Shall I compare thee to a {word} ")


def test_an_uploaded_image_gets_a_caption_and_a_bad_one_a_message(page, tmp_path):
    open_tab(page, "describe")
    upload = page.locator("#describe-image input[type=file]")
    (tmp_path / "notes.png").write_text("not an image")
    upload.set_input_files(tmp_path / "notes.png")
    page.locator("#describe-run-button").click()
    expect(page.get_by_text("notes.png is not an image this app can read")).to_be_visible()
    page.screenshot(path=tmp_path / "bad-upload.png", full_page=True)
    page.locator("#describe-image").get_by_role("button", name="Remove Image").click()
    upload.set_input_files(picture(tmp_path / "green.png", colour=(10, 200, 10)))
    page.locator("#describe-run-button").click()
    expect(page.locator("#describe-caption textarea")).to_have_value("a green picture of 40x30 pixels")
    expect(page.locator("#describe-attention img")).to_be_visible()
    page.screenshot(path=tmp_path / "caption.png", full_page=True)
    share = page.get_by_role("button", name="Share")  # Gradio's upload to a public hub, on the upload and the output
    page.locator("#describe-image").hover()
    page.locator("#describe-attention").hover()
    expect(share).to_have_count(0)


def test_the_captioning_tab_captions_an_example_image(page, tmp_path):
    if not has_captioning():
        pytest.skip("the captioning task is not installed")
    open_tab(page, "captioning")
    page.locator("#captioning-image input[type=file]").set_input_files(EXAMPLE_IMAGE)
    page.locator("#captioning-run-button").click()
    expect(page.locator("#captioning-attention img")).to_be_visible(timeout=20_000)
    assert page.locator("#captioning-caption textarea").input_value() is not None
    page.screenshot(path=tmp_path / "captioning.png", full_page=True)


def test_the_example_third_party_plugin_has_a_working_tab(page, tmp_path):
    open_tab(page, "perplexity")
    page.locator("#perplexity-text textarea").fill("Shall I compare thee to a summer's day?")
    page.locator("#perplexity-run-button").click()
    perplexity = page.locator("#perplexity-perplexity input")
    expect(perplexity).not_to_have_value("0")  # an output number shows 0 until the task answers
    assert float(perplexity.input_value()) > 1
    page.screenshot(path=tmp_path / "perplexity.png", full_page=True)


def test_the_sentiment_tab_shows_the_label_and_the_opinion(page, tmp_path):
    open_tab(page, "sentiment")
    page.locator("#sentiment-text textarea").fill("Thank you so much, the crew was wonderful!")
    page.locator("#sentiment-run-button").click()
    expect(page.locator("#sentiment-opinion img")).to_be_visible(timeout=20_000)
    expect(page.locator("#sentiment-sentiment")).to_contain_text("positive")
    page.screenshot(path=tmp_path / "sentiment.png", full_page=True)


def test_the_gates_and_gradients_tabs_draw_their_pictures(page, tmp_path):
    open_tab(page, "gates")
    page.locator("#gates-text textarea").fill("To be, or not to be")
    page.locator("#gates-run-button").click()
    expect(page.locator("#gates-picture img")).to_be_visible(timeout=20_000)
    expect(page.locator("#gates-summary textarea")).to_have_value(re.compile("cell state moves most"))
    open_tab(page, "gradients")
    page.locator("#gradients-steps input[type=number]").fill("20")
    page.locator("#gradients-run-button").click()
    expect(page.locator("#gradients-picture img")).to_be_visible(timeout=60_000)
    expect(page.locator("#gradients-summary textarea")).to_have_value(re.compile("lstm"))
    page.screenshot(path=tmp_path / "gradients.png", full_page=True)
    page.locator("#gradients-picture").hover()
    expect(page.get_by_role("button", name="Share")).to_have_count(0)
    open_tab(page, "gates")
    page.locator("#gates-picture").hover()
    expect(page.get_by_role("button", name="Share")).to_have_count(0)


def test_a_third_party_tasks_example_fills_its_input_and_a_picked_word_continues_it(page, tmp_path):
    open_tab(page, "words")
    text = page.locator("#words-text textarea")
    page.get_by_text("one two three", exact=True).click()  # the declared example, under the input
    expect(text).to_have_value("one two three")
    page.locator("#words-list-button").click()
    picked = page.locator("#words-words [data-testid='two-confidence-set']")
    expect(picked).to_be_visible()
    picked.click()
    expect(text).to_have_value("one two three two ")
    page.screenshot(path=tmp_path / "words.png", full_page=True)
