"""The Train tab in a real browser (Debian's chromium driven by Playwright, as in test_browser.py): upload a text,
train a few seconds, reload the page and find the job again, stop it, and write with the new model in the
completion tab. Skipped without /usr/bin/chromium, except in CI.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from test_browser import browser  # noqa: F401 (the chromium fixture)
from test_train_tab import completion_info, free_port

WAIT = 120_000  # ms: starting a training process on two busy cores takes seconds


@pytest.fixture(scope="module")
def train_server(tmp_path_factory, trained_run):
    """The completion tab and the Train tab, whose from-scratch start is test_train_tab's tiny recipe (no step
    limit: it runs until Stop or its budget)."""
    import genseq_web
    from genseq_web.pool import TaskPool

    models = tmp_path_factory.mktemp("browser_train_models")
    app = genseq_web.build_app({"completion": str(trained_run)}, pool=TaskPool(), models_dir=models,
                               infos=[completion_info()])
    _, url, _ = genseq_web.launch(app, port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    app.close()


def test_an_uploaded_text_trains_a_model_that_a_reload_finds_again_and_the_completion_tab_then_uses(
        browser, train_server, train_file, tmp_path):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(train_server)
    page.get_by_role("tab", name="Train", exact=True).click()
    expect(page.locator("#train-status")).to_have_text("No model has been trained here yet.")
    page.locator("#train-files input[type=file]").set_input_files(train_file)
    page.locator("#train-name textarea, #train-name input").first.fill("Browser sonnets")
    page.get_by_label("from scratch").check()
    page.locator("#train-start-button").click()
    progress = page.locator("#train-progress")
    expect(progress).to_contain_text(re.compile(r"step [1-9]\d"), timeout=WAIT)  # past its first validations
    page.screenshot(path=tmp_path / "training.png", full_page=True)

    page.reload()  # the page finds the running job again
    page.get_by_role("tab", name="Train", exact=True).click()
    expect(page.locator("#train-status")).to_contain_text("Training browser-sonnets")
    expect(page.locator("#train-start-button")).to_be_disabled()
    expect(page.locator("#train-losses")).to_be_visible()
    page.locator("#train-stop-button").click()
    expect(page.locator("#train-status")).to_contain_text("Stopped: the best model so far, browser-sonnets", timeout=WAIT)
    expect(page.locator("#train-samples")).to_contain_text("Samples from the new model")
    expect(page.locator("#train-start-button")).to_be_enabled()
    page.screenshot(path=tmp_path / "trained.png", full_page=True)

    page.get_by_role("tab", name="Completion", exact=True).click()
    box = page.locator("#completion-model input")
    box.click()
    page.get_by_role("option", name=re.compile("browser-sonnets")).click()
    page.locator("#completion-prompt textarea").fill("Shall I")
    page.locator("#completion-max_new_tokens input").fill("20")
    page.locator("#completion-run-button").click()
    expect(page.locator("#completion-notice")).to_contain_text("Finished", timeout=30_000)
    page.screenshot(path=tmp_path / "generated.png", full_page=True)
    context.close()
