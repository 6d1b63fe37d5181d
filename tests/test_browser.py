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
expect.set_options(timeout=15_000)  # a page on two cores shared with the server and the model can take seconds
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


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()


def fill_number(field, value: str) -> None:
    """Type value into a number field until it keeps it: a field in an accordion opened a moment ago is still
    being drawn, and can set itself back to its initial value after a first fill."""
    deadline = time.monotonic() + 10
    while True:
        field.fill(value)
        time.sleep(0.3)
        if field.input_value() == value or time.monotonic() > deadline:
            break
    expect(field).to_have_value(value)


def lengths(text, reads: int, pause: float) -> list[int]:
    """The continuation's length, read `reads` times `pause` seconds apart (a busy page reads slower)."""
    seen = []
    for _ in range(reads):
        seen.append(len(text.inner_text()))
        time.sleep(pause)
    return seen


def test_a_typed_prompt_streams_growing_text_and_stop_ends_it_with_a_notice(page, tmp_path):
    open_tab(page, "Completion")
    run, stop = page.locator("#completion-run-button"), page.locator("#completion-stop-button")
    suggest = page.locator("#completion-suggest-button")
    expect(stop).to_be_hidden()  # nothing to stop yet
    page.locator("#completion-prompt textarea").fill("Shall I compare thee")
    page.locator("#completion-max_new_tokens input").fill("10000")
    page.get_by_role("button", name="More options").click()
    fill_number(page.locator("#completion-min_new_tokens input"), "10000")  # no end of text: it runs until Stop
    run.click()
    text = page.locator("#completion-echo mark")  # the continuation, after the prompt
    expect(text).not_to_have_text("", timeout=20_000)
    # 10,000 tokens take the tiny model a few seconds on a quiet machine, and Stop shows only until the end
    growing = lengths(text, reads=3, pause=0.1)
    expect(run).to_be_disabled()
    expect(suggest).to_be_disabled()
    stop.click()
    page.screenshot(path=tmp_path / "completion-stopped.png", full_page=True)
    assert growing[0] < growing[1] < growing[2], growing
    expect(page.locator("#completion-notice")).to_have_text("Stopped: what was written so far is kept.")
    expect(stop).to_be_hidden()
    expect(run).to_be_enabled()
    expect(suggest).to_be_enabled()
    time.sleep(1)  # a partial output already on its way may still land
    stopped = lengths(text, reads=2, pause=1)
    assert stopped[0] == stopped[1], "the text kept growing after Stop"


def test_run_is_set_back_after_a_finished_run_and_after_an_error_named_by_its_labels(page, tmp_path):
    open_tab(page, "Completion")
    run, stop = page.locator("#completion-run-button"), page.locator("#completion-stop-button")
    page.locator("#completion-prompt textarea").fill("Shall I compare thee")
    page.locator("#completion-max_new_tokens input").fill("5")
    run.click()
    expect(page.locator("#completion-notice")).to_contain_text("Finished", timeout=20_000)
    expect(run).to_be_enabled()
    expect(stop).to_be_hidden()
    page.get_by_role("button", name="More options").click()
    fill_number(page.locator("#completion-min_new_tokens input"), "50")
    run.click()
    expect(page.get_by_text("option min new tokens (50) must not exceed max new tokens (5)")).to_be_visible()
    page.screenshot(path=tmp_path / "option-error.png", full_page=True)
    expect(run).to_be_enabled()
    expect(stop).to_be_hidden()


def test_the_page_opens_on_completion_under_a_plain_header_at_readmes_defaults(page):
    expect(page.get_by_role("tab").first).to_have_text("Completion")  # the page has drawn its tabs
    tabs = page.get_by_role("tab").all_inner_texts()
    assert tabs[0] == "Completion" and tabs[1:] == sorted(tabs[1:]), tabs
    expect(page.get_by_role("tab", name="Completion", exact=True)).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("heading", name="genseq")).to_be_visible()
    expect(page.get_by_text("Small recurrent neural networks (LSTMs) that run on this server")).to_be_visible()
    expect(page.locator("#completion-temperature input[type=number]")).to_have_value("0.7")
    expect(page.locator("#completion-top_p input[type=number]")).to_have_value("0.9")


def test_a_clicked_suggestion_is_appended_to_the_prompt(page, tmp_path):
    open_tab(page, "Completion")
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
    open_tab(page, "Describe")
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
    open_tab(page, "Captioning")
    page.locator("#captioning-image input[type=file]").set_input_files(EXAMPLE_IMAGE)
    page.locator("#captioning-run-button").click()
    expect(page.locator("#captioning-attention img")).to_be_visible(timeout=20_000)
    assert page.locator("#captioning-caption textarea").input_value() is not None
    page.screenshot(path=tmp_path / "captioning.png", full_page=True)


def test_the_example_third_party_plugin_has_a_working_tab(page, tmp_path):
    open_tab(page, "Perplexity")
    page.locator("#perplexity-text textarea").fill("Shall I compare thee to a summer's day?")
    page.locator("#perplexity-run-button").click()
    perplexity = page.locator("#perplexity-perplexity input")
    expect(perplexity).not_to_have_value("0")  # an output number shows 0 until the task answers
    assert float(perplexity.input_value()) > 1
    page.screenshot(path=tmp_path / "perplexity.png", full_page=True)


def test_the_sentiment_tab_shows_the_label_and_the_opinion(page, tmp_path):
    open_tab(page, "Sentiment")
    page.locator("#sentiment-text textarea").fill("Thank you so much, the crew was wonderful!")
    page.locator("#sentiment-run-button").click()
    expect(page.locator("#sentiment-opinion img")).to_be_visible(timeout=20_000)
    expect(page.locator("#sentiment-sentiment")).to_contain_text("positive")
    page.screenshot(path=tmp_path / "sentiment.png", full_page=True)


def test_the_gates_and_gradients_tabs_draw_their_pictures(page, tmp_path):
    open_tab(page, "Gates")
    page.locator("#gates-text textarea").fill("To be, or not to be")
    page.locator("#gates-run-button").click()
    expect(page.locator("#gates-picture img")).to_be_visible(timeout=20_000)
    expect(page.locator("#gates-summary textarea")).to_have_value(re.compile("cell state moves most"))
    open_tab(page, "Gradients")
    page.locator("#gradients-steps input[type=number]").fill("20")
    page.locator("#gradients-run-button").click()
    expect(page.locator("#gradients-picture img")).to_be_visible(timeout=60_000)
    expect(page.locator("#gradients-progress textarea")).to_have_value(re.compile("Finished in"), timeout=60_000)
    expect(page.locator("#gradients-recall")).to_contain_text("not clipped")
    page.screenshot(path=tmp_path / "gradients.png", full_page=True)
    page.locator("#gradients-picture").hover()
    expect(page.get_by_role("button", name="Share")).to_have_count(0)
    open_tab(page, "Gates")
    page.locator("#gates-picture").hover()
    expect(page.get_by_role("button", name="Share")).to_have_count(0)


def test_a_third_party_tasks_example_fills_its_input_and_a_picked_word_continues_it(page, tmp_path):
    open_tab(page, "Words")
    text = page.locator("#words-text textarea")
    page.get_by_text("one two three", exact=True).click()  # the declared example, under the input
    expect(text).to_have_value("one two three")
    page.locator("#words-list-button").click()
    picked = page.locator("#words-words [data-testid='two-confidence-set']")
    expect(picked).to_be_visible()
    picked.click()
    expect(text).to_have_value("one two three two ")
    page.screenshot(path=tmp_path / "words.png", full_page=True)


# ---- for people: examples, the result where the eye is, phones, contrast, the console ---------------------------
# @gradio/client's stand-in EventSource warns when an upload's progress stream is closed: Gradio's code, not the app's
GRADIOS_OWN = ("warning: Method not implemented.",)
CONTRASTS = """
(selector) => {
  const channels = (colour) => colour.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map((v) => v / 255)
    .map((v) => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (element) => {
    for (; element; element = element.parentElement) {
      const colour = channels(getComputedStyle(element).backgroundColor);
      if (colour.length < 4 || colour[3] > 0) return colour.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll(selector)].filter((element) => element.offsetParent !== null).map((element) => {
    const [a, b] = [luminance(channels(getComputedStyle(element).color)), luminance(background(element))];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  });
}
"""


def test_an_example_fills_the_prompt_and_ctrl_enter_shows_it_with_the_marked_continuation_and_how_it_ended(page, tmp_path):
    prompt = page.locator("#completion-prompt textarea")
    expect(prompt).to_have_attribute("placeholder", re.compile("Type the start of a text"))
    page.get_by_role("button", name="Shakespeare", exact=True).click()  # a named example
    expect(prompt).to_have_value("Shall I compare thee to a summer's day?")
    page.locator("#completion-max_new_tokens input").fill("8")
    prompt.focus()
    page.keyboard.press("Control+Enter")
    notice = page.locator("#completion-notice")
    expect(notice).to_contain_text(re.compile(r"Finished: (length|end of text)"), timeout=20_000)
    echo = page.locator("#completion-echo .echo")
    expect(echo).to_contain_text("Shall I compare thee to a summer's day?")
    continuation = echo.locator("mark").inner_text()
    assert continuation and echo.inner_text().endswith(continuation)
    page.screenshot(path=tmp_path / "finished.png", full_page=True)
    prompt.fill("A new prompt")  # an old result does not stay beside a new prompt
    expect(echo).to_have_count(0)
    expect(notice).to_have_text("")


def test_every_tab_is_one_tap_away_on_a_phone_and_the_result_is_scrolled_into_view(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(server)
    tabs = page.get_by_role("tab")
    expect(tabs.first).to_have_text("Completion")
    titles = tabs.all_inner_texts()
    assert len(titles) >= 5, titles
    for title in reversed(titles):
        tab = page.get_by_role("tab", name=title, exact=True)
        expect(tab).to_be_visible()  # not behind a "..." menu
        tab.tap()
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    page.locator("#completion-prompt textarea").fill("Shall I compare thee")
    page.locator("#completion-max_new_tokens input").fill("5")
    page.locator("#completion-run-button").tap()
    expect(page.locator("#completion-notice")).to_contain_text("Finished", timeout=20_000)
    expect(page.locator("#completion-results")).to_be_in_viewport()
    page.screenshot(path=tmp_path / "phone.png")
    context.close()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_help_text_and_placeholders_meet_wcag_aa_contrast(browser, server, theme):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, color_scheme=theme)
    page = context.new_page()
    page.goto(f"{server.rstrip('/')}/?__theme={theme}")
    expect(page.locator("#completion-run-button")).to_be_visible(timeout=10_000)
    ratios = page.evaluate(CONTRASTS, ".info-text, .model-card, .notice, [data-testid='block-info']")
    assert len(ratios) >= 5 and min(ratios) >= 4.5, sorted(ratios)[:5]
    context.close()


def test_no_tab_logs_a_console_warning_or_offers_to_share(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    logged = []
    page.on("console", lambda message: logged.append(f"{message.type}: {message.text}")
            if message.type in ("warning", "error") else None)
    page.goto(server)
    titles = page.get_by_role("tab").all_inner_texts()
    for title in titles:
        open_tab(page, title)
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    open_tab(page, "Describe")
    page.locator("#describe-image input[type=file]").set_input_files(picture(tmp_path / "red.png"))
    page.locator("#describe-run-button").click()
    expect(page.locator("#describe-attention img")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("img", name="Attention")).to_be_visible()  # a picture has a name for screen readers
    page.locator("#describe-attention").hover()
    expect(page.get_by_role("button", name="Share")).to_have_count(0)
    assert not [line for line in logged if not line.endswith(GRADIOS_OWN)], logged
    context.close()


def test_the_style_dropdown_shows_the_picked_models_labels_and_hides_for_one_without(page, tmp_path_factory,
                                                                                      trained_run, tmp_path):
    import json
    import shutil

    from test_app import served_models

    styled = served_models(tmp_path_factory, trained_run) / "styled-browser"
    shutil.copytree(trained_run, styled)  # labels in config.json are all the drop-down reads
    config = json.loads((styled / "config.json").read_text())
    (styled / "config.json").write_text(json.dumps({**config, "labels": ["austen", "poe"]}))
    try:
        page.reload()  # a page lists the models there are when it opens
        open_tab(page, "Completion")
        style, model = page.locator("#completion-style"), page.locator("#completion-model input")
        expect(style).to_be_hidden()
        model.click()
        page.get_by_role("option", name=re.compile(r"^styled-browser \(")).click()
        expect(style).to_be_visible()
        style.locator("input").click()
        expect(page.get_by_role("option")).to_have_text([re.compile(rf"{re.escape(label)}$")  # after a tick mark
                                                         for label in ("(none)", "austen", "poe")])
        page.get_by_role("option", name="poe").click()
        page.screenshot(path=tmp_path / "style.png", full_page=True)
        model.click()
        page.get_by_role("option", name=re.compile(r"\(default\)$")).click()
        expect(style).to_be_hidden()
    finally:
        shutil.rmtree(styled)
